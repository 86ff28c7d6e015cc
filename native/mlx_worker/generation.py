"""Generation: one loaded model, its batch of running requests, and the handling of each request type."""

import secrets
import time
import traceback

from protocol import count_step, log, send
from sampling import continuation_detokenizer, token_logprobs
from templates import TemplateLimitError
from textfilter import TEXT, THINK, TOOL, OutputSplitter, parse_tool_block
from harmony import HarmonySplitter
from tool_formats import fallback_format
from distributed import GroupLost
from operations import ModelOperations
from prompts import Prompts
from speculative import DraftRefused, SpeculativeGenerator, check_cache, vocabulary_mismatch

# ---------------------------------------------------------------------------------------------


class Request:
    def __init__(self, rid, uid, prompt_tokens, cached, max_tokens, detok, splitter, tools):
        self.id = rid
        self.uid = uid
        self.prompt_tokens = prompt_tokens
        self.cached = cached
        self.max_tokens = max_tokens
        self.detok = detok
        self.splitter = splitter
        self.tools = tools
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        # The tool call being written: its index in this generation and its text so far.
        self.calls = 0
        self.call_text = ""
        self.call_marker = ""
        self.started = time.perf_counter()
        self.first = None
        # Alternatives per token when the request asked for logprobs, else None; the last token decodes the next one's text.
        self.logprobs = None
        self.last_token = None
        # Drafted and accepted tokens so far (counted only on a model loaded with a draft).
        self.drafts = (0, 0)


class UnsupportedArchitecture(Exception):
    """The installed mlx-lm has no model class for this model's architecture."""


class Worker(ModelOperations, Prompts):
    def __init__(self):
        self.mx = None
        self.model = None
        self.tokenizer = None
        # The draft model of speculative decoding, else None.
        self.draft = None
        self.gen = None
        self.ctx = 0
        self.parallel = 1
        self.prefill_step = 512
        self.prompt_cache = None
        self.tools_format = None
        self.active = {}  # uid -> Request
        self.by_id = {}  # request id -> Request
        # The distributed group when the model is sharded across processes (distributed.py), else None.
        self.group = None

    @property
    def following(self):
        """A rank other than 0 of a distributed model: it applies rank 0's operations and serves nothing itself."""
        return self.group is not None and self.group.rank != 0

    # -- loading ------------------------------------------------------------------------------

    def load(self, msg):
        started = time.perf_counter()
        import mlx.core as mx
        from mlx_lm import load as load_model
        from mlx_lm.models.cache import LRUPromptCache

        self.mx = mx
        dist = msg.get("distributed")
        try:
            if dist:
                from distributed import join
                from mlx_lm.utils import sharded_load

                self.group = join(mx, dist["rank"], dist["size"], dist.get("join_timeout_s") or 120,
                                  lambda why: send({"type": "fatal", "message": f"cannot join the distributed group: {why}"}))
                self.model, self.tokenizer = sharded_load(msg["path"])
            else:
                self.model, self.tokenizer = load_model(msg["path"])
        except ValueError as e:
            # mlx-lm's only signal that it has no module for the config's model_type.
            if str(e).startswith("Model type ") and str(e).endswith(" not supported."):
                raise UnsupportedArchitecture(str(e)) from e
            raise
        if msg.get("draft") == msg["path"]:
            # A model drafting for itself (tests, benchmarks) shares its weights; its draft cache is its own.
            check_cache(self.model, self.model)
            self.draft = self.model
        elif msg.get("draft"):
            self.load_draft(load_model, msg["draft"])
        self.ctx = msg["context_length"]
        self.parallel = msg["parallel"]
        self.prefill_step = msg.get("prefill_step_size") or 512
        budget = msg.get("prompt_cache_bytes")
        # Finished conversations keep their KV cache so the next turn only evaluates new tokens.
        self.prompt_cache = LRUPromptCache(max_size=max(4, 2 * self.parallel), max_bytes=budget if budget else 1 << 62)
        self._new_generator()
        tok = self.tokenizer
        self.tools_format = self.find_tools_format()
        send({
            "type": "loaded",
            "id": msg["id"],
            "model_type": str(getattr(self.model, "model_type", "") or ""),
            "vocab_size": len(tok),
            "has_chat_template": bool(tok.has_chat_template),
            "has_tool_calling": self.tools_format is not None,
            "think_start": tok.think_start if tok.has_thinking else None,
            "think_end": tok.think_end if tok.has_thinking else None,
            "tool_call_start": self.tools_format[1] if self.tools_format else None,
            "tool_call_end": self.tools_format[2] if self.tools_format else None,
            "tool_parser": self.tools_format[0] if self.tools_format else None,
            "eos_token_ids": sorted(int(t) for t in tok.eos_token_ids),
            # What the tokenizer puts before a text when asked for special tokens (BOS, if the model wants one).
            "bos_token_ids": [int(t) for t in self.bos_ids()],
            "load_ms": round((time.perf_counter() - started) * 1000, 1),
            "memory": self.memory_numbers(),
            **({"rank": self.group.rank, "size": self.group.size} if self.group is not None else {}),
        })

    def load_draft(self, load_model, path):
        try:
            draft, draft_tokenizer = load_model(path)
        except ValueError as e:
            if str(e).startswith("Model type ") and str(e).endswith(" not supported."):
                raise DraftRefused("draft_unsupported", f"the draft model: {e}") from e
            raise
        why = vocabulary_mismatch(self.tokenizer, draft_tokenizer)
        if why is not None:
            raise DraftRefused("draft_vocabulary_mismatch", f"the draft model's vocabulary differs from the model's ({why})")
        check_cache(self.model, draft)
        self.draft = draft

    def find_tools_format(self):
        """(family, start, end, parser, leading_json): mlx-lm's reading of the model, else LMX's own fallback."""
        tok = self.tokenizer
        if tok.has_tool_calling:
            module = getattr(tok.tool_parser, "__module__", "") or ""
            return (module.rsplit(".", 1)[-1] or "mlx_lm", tok.tool_call_start, tok.tool_call_end or "", tok.tool_parser, False)
        return fallback_format(tok) if tok.has_chat_template else None

    def _new_generator(self):
        from mlx_lm.generate import BatchGenerator

        if self.draft is not None:
            self.gen = SpeculativeGenerator(self.model, self.draft, self.prefill_step)
            return

        self.gen = BatchGenerator(
            self.model,
            completion_batch_size=self.parallel,
            prefill_batch_size=self.parallel,
            prefill_step_size=self.prefill_step,
        )

    def memory_numbers(self):
        mx = self.mx
        if mx is None:
            return {"active_bytes": 0, "peak_bytes": 0, "cache_bytes": 0, "prompt_cache_bytes": 0}
        return {
            "active_bytes": int(mx.get_active_memory()),
            "peak_bytes": int(mx.get_peak_memory()),
            "cache_bytes": int(mx.get_cache_memory()),
            "prompt_cache_bytes": int(self.prompt_cache.nbytes) if self.prompt_cache is not None else 0,
        }

    def require_model(self, rid):
        if self.model is None:
            send({"type": "error", "id": rid, "code": "not_loaded", "message": "no model is loaded in this worker"})
            return False
        return True

    # -- generation ---------------------------------------------------------------------------

    def generate(self, msg):
        rid = msg["id"]
        if not self.require_model(rid):
            return
        if rid in self.by_id:
            send({"type": "error", "id": rid, "code": "duplicate_id", "message": f"request id {rid} is already running"})
            return
        p = msg["prompt"]
        tools = p.get("tools") or []
        try:
            prompt = self.chat_tokens(p["messages"], tools, p.get("template_kwargs")) if p["kind"] == "chat" else self.text_tokens(p["text"])
        except TemplateLimitError as e:
            send({"type": "error", "id": rid, "code": "invalid_chat_template", "message": f"the model's chat template was refused: {e}"})
            return
        except Exception as e:  # a template can fail on odd message sequences
            send({"type": "error", "id": rid, "code": "template_error", "message": f"cannot apply the chat template: {e}"})
            return
        n = len(prompt)
        if n == 0:
            send({"type": "error", "id": rid, "code": "empty_prompt", "message": "the prompt has no tokens"})
            return
        requested = msg.get("max_tokens")
        if n >= self.ctx:
            send({"type": "error", "id": rid, "code": "context_length_exceeded", "message": "prompt does not fit the context",
                  "prompt_tokens": n, "context_length": self.ctx})
            return
        # More than the room left is not an error: generation stops when the context is full.
        max_tokens = min(requested, self.ctx - n) if requested is not None else self.ctx - n

        s = msg["sampling"]
        if self.group is not None and s.get("seed") is None:
            # Every rank samples the same token only if every rank draws the same random numbers.
            s = {**s, "seed": secrets.randbits(31)}
        tok = self.tokenizer
        fmt = self.tools_format
        parse_tools = msg["parse_tools"] and bool(tools) and fmt is not None
        harmony = fmt is not None and fmt[0] == "harmony" and p["kind"] == "chat"
        split = msg.get("split_reasoning", False) and p["kind"] == "chat" and tok.has_thinking
        splitter = HarmonySplitter(msg.get("split_reasoning", False), parse_tools) if harmony else OutputSplitter(
            tok.think_start if split else None, tok.think_end if split else None,
            fmt[1] if parse_tools else None, fmt[2] if parse_tools else None,
            in_think=split and self.ends_in_thinking(prompt), leading_json=parse_tools and fmt[4])
        uid, cached = self.run({"op": "insert", "prompt": prompt, "max_tokens": max_tokens, "sampling": s})
        detok = continuation_detokenizer(tok.detokenizer) if p["kind"] == "text" else tok.detokenizer
        req = Request(rid, uid, n, cached, max_tokens, detok, splitter, tools if parse_tools else None)
        req.logprobs = msg.get("logprobs")
        req.last_token = prompt[-1] if prompt else None
        self.active[uid] = req
        self.by_id[rid] = req
        send({"type": "started", "id": rid, "prompt_tokens": n, "cached_tokens": cached, "max_tokens": max_tokens})

    def cancel(self, rid):
        req = self.by_id.pop(rid, None)
        if req is None:
            return  # already finished: its final message is on the way or sent
        self.active.pop(req.uid, None)
        self.run({"op": "remove", "uid": req.uid, "keep": False})
        send({"type": "error", "id": rid, "code": "cancelled", "message": "cancelled"})

    def end(self, rid):
        """Ends a generation as if the model had stopped: `done` with the tokens generated so far."""
        req = self.by_id.get(rid)
        if req is None:
            return  # already finished: its `done` is on the way or sent
        self.run({"op": "remove", "uid": req.uid, "keep": True})
        # Text after the stop is never wanted; a tool call it cut is closed as it stands.
        req.splitter.abandon()
        self.send_output(req, req.splitter.finish(), cut=True)
        self.finish(req, "stop")

    def has_work(self):
        return bool(self.active)

    def step(self):
        try:
            self._step()
        except GroupLost:
            raise
        except Exception as e:
            # One bad step fails the requests in the batch, not the worker: the model stays loaded.
            log(traceback.format_exc())
            self.fail_all("generation_failed", f"generation failed: {e}")
        count_step()

    def _step(self):
        prompt_responses, responses = self.run({"op": "step"})
        for r in prompt_responses:
            req = self.active.get(r.uid)
            if req is not None and not r.end_of_prompt:
                send({"type": "progress", "id": req.id, "processed": int(r.progress[0]) + req.cached, "total": req.prompt_tokens})
        finished = []
        for r in responses:
            req = self.active.get(r.uid)
            if req is None:
                continue
            if req.first is None:
                req.first = time.perf_counter()
            if self.draft is not None:
                req.drafts = (r.drafted, r.accepted)
            thinking = req.splitter.state == THINK
            if r.finish_reason == "stop":
                # The end-of-sequence token itself is not text.
                req.detok.finalize()
            else:
                req.completion_tokens += 1
                entry = None
                if req.logprobs is not None:
                    entry = token_logprobs(self.mx, self.tokenizer, r.logprobs, r.token, req.last_token, req.logprobs)
                req.last_token = r.token
                req.detok.add_token(r.token)
                if r.finish_reason == "length":
                    req.detok.finalize()
            events = req.splitter.feed(req.detok.last_segment)
            if r.finish_reason is not None:
                events += req.splitter.finish()
            if r.finish_reason != "stop":
                aside = thinking or req.splitter.state in (THINK, TOOL) or any(kind != TEXT for kind, _ in events)
                # The token that opens a thought (<think>), those inside it and the one that closes it.
                if thinking or req.splitter.state == THINK or any(kind == THINK for kind, _ in events):
                    req.reasoning_tokens += 1
                # Logprobs describe the answer (content), not thoughts or tool calls.
                if entry is not None and not aside:
                    send({"type": "logprobs", "id": req.id, "tokens": [entry]})
            self.send_output(req, events, cut=r.finish_reason == "length")
            if r.finish_reason is None:
                continue
            finished.append((req, r.finish_reason))
        for req, reason in finished:
            self.finish(req, reason)

    def send_output(self, req, events, cut):
        """Answer and thinking text as they come; a tool call's text as it comes, then its parse when it closes."""
        for kind, text in events:
            if kind == TEXT:
                if text:
                    send({"type": "text", "id": req.id, "text": text})
            elif kind == THINK:
                if text:
                    send({"type": "reasoning", "id": req.id, "text": text})
            elif kind == TOOL:
                req.call_text += text
                if text:
                    send({"type": "tool_text", "id": req.id, "call": req.calls, "text": text})
            elif kind == "tool_start":
                req.call_marker = text
            else:
                send({"type": "tool_end", "id": req.id, "call": req.calls, "calls": self.parse_call(req.call_text, req.tools), "cut": cut,
                      "raw": req.call_marker + req.call_text + text})
                req.calls += 1
                req.call_text = ""

    def parse_call(self, raw, tools):
        return parse_tool_block(self.tools_format[3], raw, tools, log)

    def finish(self, req, reason):
        self.active.pop(req.uid, None)
        self.by_id.pop(req.id, None)
        now = time.perf_counter()
        first = req.first if req.first is not None else now
        send({
            "type": "done",
            "id": req.id,
            "finish_reason": reason,
            "prompt_tokens": req.prompt_tokens,
            "cached_tokens": req.cached,
            "completion_tokens": req.completion_tokens,
            "reasoning_tokens": req.reasoning_tokens,
            "prefill_ms": round((first - req.started) * 1000, 3),
            "decode_ms": round((now - first) * 1000, 3),
            "peak_memory_bytes": int(self.mx.get_peak_memory()),
            **({"draft_tokens": req.drafts[0], "draft_accepted_tokens": req.drafts[1]} if self.draft is not None else {}),
        })

    def fail_all(self, code, message):
        for req in list(self.active.values()):
            send({"type": "error", "id": req.id, "code": code, "message": message})
        self.active.clear()
        self.by_id.clear()
        self.run({"op": "reset"})

    # -- dispatch -----------------------------------------------------------------------------

    def handle(self, msg):
        kind = msg["type"]
        if kind == "load":
            if self.model is not None:
                send({"type": "error", "id": msg["id"], "code": "already_loaded", "message": "this worker already holds a model"})
                return
            try:
                self.load(msg)
            except Exception as e:
                log(traceback.format_exc())
                # A load that failed part way (its draft refused, say) leaves nothing loaded.
                self.model = self.tokenizer = self.draft = None
                if isinstance(e, UnsupportedArchitecture):
                    code = "unsupported_architecture"
                elif isinstance(e, DraftRefused):
                    code = e.code
                else:
                    code = "runtime_broken" if isinstance(e, ImportError) else "load_failed"
                send({"type": "error", "id": msg["id"], "code": code, "message": f"{type(e).__name__}: {e}"})
        elif kind == "generate":
            self.generate(msg)
        elif kind == "cancel":
            self.cancel(msg["id"])
        elif kind == "end":
            self.end(msg["id"])
        elif kind == "tokenize":
            if self.require_model(msg["id"]):
                send({"type": "tokens", "id": msg["id"], "tokens": list(self.tokenizer.encode(msg["text"], add_special_tokens=msg["add_special_tokens"]))})
        elif kind == "detokenize":
            if self.require_model(msg["id"]):
                send({"type": "text_of", "id": msg["id"], "text": self.tokenizer.decode(msg["tokens"])})
        elif kind == "chat_tokens":
            if self.require_model(msg["id"]):
                try:
                    tokens = self.chat_tokens(msg["messages"], msg.get("tools") or [], msg.get("template_kwargs"))
                except Exception as e:
                    send({"type": "error", "id": msg["id"], "code": "template_error", "message": f"cannot apply the chat template: {e}"})
                    return
                send({"type": "tokens", "id": msg["id"], "tokens": tokens})
        elif kind == "memory":
            send({"type": "memory", "id": msg["id"], "running": len(self.active),
                  "generated": sum(r.completion_tokens for r in self.active.values()), **self.memory_numbers()})
        elif kind == "score":
            if self.require_model(msg["id"]):
                self.score(msg)

