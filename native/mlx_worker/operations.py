"""The operations that change the model's state: start a sequence, one step, drop a sequence, score.

Each goes through `run`, which on a model sharded across processes (distributed.py) first sends the
operation to the other ranks; they apply the same one with `apply`, so every rank's batch, prompt
cache and samplers stay identical.
"""

import math

from distributed import GroupLost
from protocol import send
from sampling import logit_bias_of, make_sampler, token_logprobs

# Penalties look this many tokens back, as the llama.cpp engine does (its lastTokens).
PENALTY_WINDOW = 64


class ModelOperations:
    def _insert(self, op):
        """Starts a sequence: the longest cached prefix of the prompt is reused, the rest prefilled."""
        from mlx_lm.generate import StopSequences
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache
        from mlx_lm.sample_utils import make_logits_processors

        prompt, s = op["prompt"], op["sampling"]
        n = len(prompt)
        cache, rest = self.prompt_cache.fetch_nearest_cache("model", prompt)
        if cache is not None and not rest:
            # An exact hit still needs one token to evaluate for the first prediction.
            if can_trim_prompt_cache(cache):
                trim_prompt_cache(cache, 1)
                rest = prompt[-1:]
            else:
                cache, rest = None, prompt
        cached = n - len(rest)
        sampler = make_sampler(self.mx, float(s.get("temperature", 0.8) if s.get("temperature") is not None else 0.8),
                               int(s.get("top_k") if s.get("top_k") is not None else 40),
                               float(s.get("top_p") if s.get("top_p") is not None else 0.95),
                               float(s.get("min_p") if s.get("min_p") is not None else 0.05),
                               s.get("seed"))
        rep = s.get("repeat_penalty")
        tok = self.tokenizer
        ignore_eos = bool(s.get("ignore_eos"))
        processors = make_logits_processors(
            # ignore_eos: end-of-sequence tokens can never be sampled, so generation runs to max_tokens.
            logit_bias=logit_bias_of(s, tok.eos_token_ids),
            repetition_penalty=rep if rep is not None and rep != 1 else None, repetition_context_size=PENALTY_WINDOW,
            presence_penalty=s.get("presence_penalty"), presence_context_size=PENALTY_WINDOW,
            frequency_penalty=s.get("frequency_penalty"), frequency_context_size=PENALTY_WINDOW,
        )
        (uid,) = self.gen.insert(
            [rest],
            max_tokens=[op["max_tokens"]],
            caches=[cache],
            all_tokens=[prompt[:cached]],
            samplers=[sampler],
            logits_processors=[processors],
            stop_sequences=[StopSequences([] if ignore_eos else [(int(t),) for t in tok.eos_token_ids])],
        )
        return uid, cached

    def _remove(self, op):
        """Drops a sequence; `keep` keeps its KV cache for a later request sharing its prefix."""
        if not op["keep"]:
            self.gen.remove([op["uid"]])
            return
        caches = self.gen.remove([op["uid"]], return_prompt_caches=True)
        for cache, tokens in caches.values():
            self.prompt_cache.insert_cache("model", list(tokens), cache)

    def _next(self):
        """One step of the batch; finished sequences leave their KV cache to the prompt cache."""
        prompt_responses, responses = self.gen.next()
        for r in responses:
            if r.finish_reason is not None and r.prompt_cache is not None:
                self.prompt_cache.insert_cache("model", list(r.all_tokens), r.prompt_cache)
        return prompt_responses, responses

    def apply(self, op):
        """Runs one operation on the model: here for rank 0 (via run) and as sent by it on the other ranks."""
        kind = op["op"]
        if kind == "insert":
            return self._insert(op)
        if kind == "remove":
            return self._remove(op)
        if kind == "step":
            return self._next()
        if kind == "score":
            return self._score(op)
        if kind == "reset":
            return self._new_generator()
        raise ValueError(f"unknown operation {kind!r}")

    def run(self, op):
        """Applies a model operation, first sending it to the other ranks when the model is distributed."""
        if self.group is None:
            return self.apply(op)
        self.group.broadcast(op)
        try:
            return self.apply(op)
        except GroupLost:
            raise
        except Exception as e:
            # The other ranks may have done it; which state each rank's batch is in is no longer known.
            raise GroupLost(f"{op['op']} failed on rank 0: {type(e).__name__}: {e}") from e

    def score(self, msg):
        tokens = msg["tokens"]
        if len(tokens) > self.ctx:
            send({"type": "error", "id": msg["id"], "code": "context_length_exceeded", "message": "the scored text does not fit the context",
                  "prompt_tokens": len(tokens), "context_length": self.ctx})
            return
        out, entries = self.run({"op": "score", "tokens": tokens, "first_scored": msg["first_scored"], "top": msg.get("top")})
        reply = {"type": "scores", "id": msg["id"], "logprobs": [x if math.isfinite(x) else -1e30 for x in out]}
        if entries is not None:
            reply["tokens"] = entries
        send(reply)

    def _score(self, op):
        """Log-probabilities of tokens[first_scored:] given what precedes each, on a fresh cache."""
        from mlx_lm.models.cache import make_prompt_cache

        mx = self.mx
        tokens, first, top = op["tokens"], op["first_scored"], op["top"]
        cache = make_prompt_cache(self.model)
        out = []
        # Only rank 0 answers; the others run the same forward passes for its collectives.
        entries = [] if top is not None and not self.following else None
        pos = 0
        # Chunks as in prefill; logits are only evaluated where a token is scored, the rest only fills the cache.
        while pos < len(tokens) - 1:
            end = min(len(tokens) - 1, pos + self.prefill_step)
            logits = self.model(mx.array([tokens[pos:end]]), cache=cache)
            lo = max(pos, first - 1)
            if lo < end:
                sel = logits[0, lo - pos:end - pos, :].astype(mx.float32)
                logprobs = sel - mx.logsumexp(sel, axis=-1, keepdims=True)
                picked = mx.take_along_axis(logprobs, mx.array(tokens[lo + 1:end + 1])[:, None], axis=-1)
                out.extend(float(x) for x in picked.reshape(-1).tolist())
                if entries is not None:
                    for row in range(end - lo):
                        entries.append(token_logprobs(mx, self.tokenizer, logprobs[row], tokens[lo + 1 + row], tokens[lo + row], top))
            else:
                mx.eval([c.state for c in cache])
            pos = end
        return out, entries
