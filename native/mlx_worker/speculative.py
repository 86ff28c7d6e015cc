"""Speculative decoding with a draft model: mlx-lm's speculative_generate_step behind the three
BatchGenerator methods the worker uses (insert, next, remove), one sequence at a time.

mlx-lm's BatchGenerator has no draft model, and its own server runs draft-model requests one by
one through speculative_generate_step; so does this. A sequence's prompt cache is the target's
layers followed by the draft's (the layout speculative_generate_step reads), so the worker's
prompt cache keeps both models' KV for a conversation and the next turn skips them together.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any, List, Optional

from operations import PENALTY_WINDOW

# Tokens the draft model proposes per verification step (mlx-lm's own default, generate and server).
DRAFT_TOKENS = 3


class DraftRefused(Exception):
    """A draft model that cannot draft for the target: `code` says why (refused as a bad request, not a failure)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def vocabulary_mismatch(target, draft):
    """Why `draft`'s tokenizer gives token ids other meanings than `target`'s, or None (mlx-lm compares the sizes; so does this, then the tokens)."""
    if len(target) != len(draft):
        return f"vocabulary sizes differ ({len(target)} vs {len(draft)} tokens)"
    if target.vocab_size != draft.vocab_size:
        return f"base vocabulary sizes differ ({target.vocab_size} vs {draft.vocab_size})"
    ours, theirs = target.get_vocab(), draft.get_vocab()
    if ours == theirs:
        return None
    by_id = {i: t for t, i in theirs.items()}
    for token, i in sorted(ours.items(), key=lambda item: item[1]):
        if by_id.get(i) != token:
            return f"token {i} differs"
    return "the token lists differ"


def check_cache(model, draft):
    """speculative_generate_step rewinds the KV cache after each refuted draft: only plain KV caches can be rewound at every length."""
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    for name, m in (("model", model), ("draft model", draft)):
        kinds = {type(c).__name__ for c in make_prompt_cache(m) if not isinstance(c, KVCache)}
        if kinds:
            raise DraftRefused("draft_unsupported", f"speculative decoding needs a KV cache it can rewind, and the {name}'s layers use {', '.join(sorted(kinds))}")


@dataclass
class PromptResponse:
    uid: int
    progress: tuple
    end_of_segment: bool
    end_of_prompt: bool


@dataclass
class Response:
    uid: int
    token: int
    logprobs: Any
    finish_reason: Optional[str]
    prompt_cache: Optional[List[Any]]
    all_tokens: Optional[List[int]]
    # This sequence's drafted and accepted tokens so far.
    drafted: int
    accepted: int


class _Sequence:
    def __init__(self, uid, rest, max_tokens, cache, known, sampler, processors, stop):
        self.uid = uid
        # Tokens not yet in the cache; the last one starts generation.
        self.rest = list(rest)
        self.total = len(rest)
        self.max_tokens = max_tokens
        self.cache = cache
        # Every token of the conversation so far: the cache holds a prefix of them.
        self.tokens = list(known) + list(rest)
        self.sampler = sampler
        self.processors = processors
        self.matcher = stop.matcher()
        self.steps = None
        self.generated = 0
        self.drafted = 0
        self.accepted = 0
        # Whether the last token ended a verification step (the next one starts a new draft).
        self.round_done = True


class SpeculativeGenerator:
    def __init__(self, model, draft, prefill_step_size):
        self.model = model
        self.draft = draft
        self.prefill_step = prefill_step_size
        self.layers = len(model.layers)
        self.waiting = deque()
        self.current = None
        self.uid_count = 0

    def insert(self, prompts, max_tokens, caches, all_tokens, samplers, logits_processors, stop_sequences):
        from mlx_lm.models.cache import make_prompt_cache

        uids = []
        for rest, m, cache, known, sampler, processors, stop in zip(prompts, max_tokens, caches, all_tokens, samplers, logits_processors, stop_sequences):
            if cache is None:
                cache = make_prompt_cache(self.model) + make_prompt_cache(self.draft)
            self.waiting.append(_Sequence(self.uid_count, rest, m, cache, known, sampler, processors, stop))
            uids.append(self.uid_count)
            self.uid_count += 1
        return uids

    def next(self):
        import mlx.core as mx
        from mlx_lm.generate import generation_stream

        with mx.stream(generation_stream):
            return self._next(mx)

    def _next(self, mx):
        if self.current is None:
            if not self.waiting:
                return [], []
            self.current = self.waiting.popleft()
        s = self.current
        if len(s.rest) > 1:
            # The prompt in chunks, one per step as BatchGenerator does, so a cancel is seen between them.
            chunk = s.rest[: min(self.prefill_step, len(s.rest) - 1)]
            s.rest = s.rest[len(chunk):]
            x = mx.array(chunk)[None]
            self.model(x, cache=s.cache[: self.layers])
            self.draft(x, cache=s.cache[self.layers:])
            mx.eval([c.state for c in s.cache])
            mx.clear_cache()
            return [PromptResponse(s.uid, (s.total - len(s.rest), s.total), False, False)], []
        if s.steps is None:
            s.steps = self._start(mx, s)
        if s.round_done:
            # The step that yields the next token first drafts this many for the target to check.
            s.drafted += min(s.max_tokens - s.generated, DRAFT_TOKENS)
        token, logprobs, from_draft = next(s.steps)
        s.generated += 1
        s.tokens.append(token)
        if from_draft:
            s.accepted += 1
        s.round_done = not from_draft
        finish = "length" if s.generated >= s.max_tokens else None
        if s.matcher.advance(token):
            finish = "stop"
        cache = tokens = None
        if finish is not None:
            cache, tokens = self._close(s)
            self.current = None
        return [], [Response(s.uid, token, logprobs, finish, cache, tokens, s.drafted, s.accepted)]

    def _start(self, mx, s):
        from mlx_lm.generate import speculative_generate_step

        processors = s.processors
        if processors:
            # speculative_generate_step shows the processors the generated tokens after the prompt's
            # last; the penalties also look back into the prompt, as they do without a draft.
            before = mx.array(s.tokens[: len(s.tokens) - len(s.rest)][-PENALTY_WINDOW:], dtype=mx.uint32)
            processors = [_with_context(p, before, mx) for p in processors]
        return speculative_generate_step(
            mx.array(s.rest), self.model, self.draft, num_draft_tokens=DRAFT_TOKENS, max_tokens=s.max_tokens,
            sampler=s.sampler, logits_processors=processors, prompt_cache=s.cache, prefill_step_size=self.prefill_step)

    def _close(self, s):
        """Stops the sequence; its cache trimmed so both models hold the same tokens, and those tokens."""
        from mlx_lm.models.cache import trim_prompt_cache

        if s.steps is not None:
            s.steps.close()  # its `finally` rewinds the refuted drafts
            s.steps = None
        target, draft = s.cache[: self.layers], s.cache[self.layers:]
        t, d = target[0].offset, draft[0].offset
        n = min(t, d, len(s.tokens))
        trim_prompt_cache(target, t - n)
        trim_prompt_cache(draft, d - n)
        return s.cache, s.tokens[:n]

    def remove(self, uids, return_prompt_caches=False):
        out = {}
        for uid in uids:
            if self.current is not None and self.current.uid == uid:
                s, self.current = self.current, None
            else:
                s = next((w for w in self.waiting if w.uid == uid), None)
                if s is None:
                    continue
                self.waiting.remove(s)
            cache, tokens = self._close(s)
            if return_prompt_caches:
                out[uid] = (cache, tokens)
        return out


def _with_context(processor, before, mx):
    return lambda tokens, logits: processor(mx.concatenate([before, tokens]), logits)
