"""Token sampling for a request (mlx arrays in, token ids out)."""

import math

# Sampling. Same order and defaults as LMX's llama.cpp engine: top-k first (which also makes the
# later steps cheap on a large vocabulary), then top-p and min-p over what is left, then
# temperature. A seed gives the request its own random key, so seeded requests are reproducible
# even while batched with others.


def make_sampler(mx, temperature, top_k, top_p, min_p, seed):
    if temperature <= 0:
        return lambda logprobs: mx.argmax(logprobs, axis=-1)
    key = [mx.random.key(seed)] if seed is not None else None

    def sample(logprobs):
        vocab = logprobs.shape[-1]
        values, index = logprobs, None
        if 0 < top_k < vocab:
            index = mx.argpartition(-logprobs, kth=top_k - 1, axis=-1)[..., :top_k]
            values = mx.take_along_axis(logprobs, index, axis=-1)
        if 0 < top_p < 1:
            probs = mx.softmax(values, axis=-1)
            ordered = mx.sort(probs, axis=-1)[..., ::-1]
            before = mx.cumsum(ordered, axis=-1) - ordered
            # The smallest probability still needed to reach top_p; the most likely token always stays.
            kept = mx.where(before < top_p, ordered, mx.array(float("inf"), ordered.dtype))
            threshold = mx.min(kept, axis=-1, keepdims=True)
            values = mx.where(probs < threshold, mx.array(-float("inf"), values.dtype), values)
        if min_p > 0:
            floor = mx.max(values, axis=-1, keepdims=True) + math.log(min_p)
            values = mx.where(values < floor, mx.array(-float("inf"), values.dtype), values)
        scaled = values * (1.0 / temperature)
        if key is not None:
            pair = mx.random.split(key[0])
            key[0] = pair[0]
            choice = mx.random.categorical(scaled, key=pair[1])
        else:
            choice = mx.random.categorical(scaled)
        if index is not None:
            choice = mx.take_along_axis(index, choice[..., None], axis=-1).squeeze(-1)
        return choice

    return sample




# Logit bias and logprobs. OpenAI's -100 bans a token; a large finite number keeps the arithmetic
# finite (logprobs stay JSON numbers) while no sampler can pick it.
BAN = -1e9
# Logprobs are floored here so that a banned token's logprob is still a plain JSON number.
MIN_LOGPROB = -9999.0


def logit_bias_of(sampling, eos_ids):
    """The request's logit bias (token id → added logit) merged with ignore_eos's ban, or None."""
    bias = {int(t): BAN for t in eos_ids} if sampling.get("ignore_eos") else {}
    for key, value in (sampling.get("logit_bias") or {}).items():
        token = int(key)
        if bias.get(token) == BAN:
            continue  # ignore_eos's ban stands
        bias[token] = BAN if value <= -100 else float(value)
    return bias or None


def token_text(tokenizer, token, prev):
    """The text `token` adds after `prev` (None at the start): decoded alone, SentencePiece drops a leading space."""
    try:
        if prev is None:
            return tokenizer.decode([token])
        return tokenizer.decode([prev, token])[len(tokenizer.decode([prev])):]
    except Exception:
        # Ids past the tokenizer (models pad their output layer) have no text; never fail the step for it.
        return ""


def token_logprobs(mx, tokenizer, logprobs, token, prev, top):
    """One generated token's entry of a `logprobs` message: its logprob and the `top` most likely alternatives."""
    def floor(x):
        return max(float(x), MIN_LOGPROB)

    alternatives = []
    if top > 0:
        index = mx.argpartition(-logprobs, kth=top - 1)[:top]
        values = logprobs[index]
        order = mx.argsort(-values)
        for i, lp in zip(index[order].tolist(), values[order].tolist()):
            alternatives.append({"token": token_text(tokenizer, int(i), prev), "logprob": floor(lp)})
    return {"token": token_text(tokenizer, token, prev), "logprob": floor(logprobs[token].item()), "top": alternatives}


def continuation_detokenizer(detok):
    """
    A streaming detokenizer for a raw text prompt: mlx-lm's drop the first piece's leading space
    (right for the start of a chat reply), but a completion continues its prompt, where
    "Once upon a" + " time" must not become "Once upon atime".
    """
    if hasattr(detok, "trim_space"):
        detok.trim_space = False  # SPM
    if hasattr(detok, "_maybe_trim_space"):
        detok._maybe_trim_space = lambda text: text  # BPE: trims only while its text is empty
    return detok
