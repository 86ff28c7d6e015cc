// A stand-in for native/mlx_worker/: speaks the real worker protocol (src/engines/mlx/protocol.ts,
// JSON lines, validated on receipt like the real worker does) without mlx, and
// misbehaves on cue, so the supervisor's crash, hang and restart handling is tested in
// milliseconds on any machine.
//
//   bun stub-mlx-worker.ts PLAN [STARTS_FILE]
//
// PLAN is a comma-separated list of behaviours, one per start of the worker; the last one repeats.
// STARTS_FILE counts the starts across processes (the supervisor restarts the same command).
// Behaviours:
//   ok                  a well-behaved worker: replies "w0 w1 w2 …" one word per token
//   exit-at-start       prints a traceback to stderr and exits 3 before saying hello
//   exit-on-load        says hello, then prints a traceback and exits 1 when asked to load
//   exit-on-generate    dies (SIGKILL) as a generation arrives, before any output
//   exit-mid-generation dies (SIGKILL) after two tokens of a generation
//   hang-at-start       says nothing, ever (no hello, no heartbeat)
//   hang-on-generate    stops all output, heartbeats included, once a generation arrives
//   slow-start          heartbeats for STUB_DELAY_MS (default 500) before saying hello
//   garbage             writes a line that is not JSON instead of hello
//   garbage-on-generate writes a line that is not JSON in the middle of a generation
//   protocol-mismatch   says hello with a protocol version LMX does not speak
// A load naming a draft model counts drafts in `done` (one drafted per token, all but the first
// accepted); a draft folder whose name has "mismatch" in it is refused as mlx-lm's check would.
// Env: STUB_TOKEN_MS (delay per token, default 5), STUB_HEARTBEAT_MS (default 100).

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as v from "valibot";
import { PROTOCOL_VERSION, ToWorker } from "../../src/engines/mlx/protocol.ts";

type Behaviour =
  | "ok" | "exit-at-start" | "exit-on-load" | "exit-on-generate" | "exit-mid-generation" | "hang-at-start"
  | "hang-on-generate" | "slow-start" | "garbage" | "garbage-on-generate" | "protocol-mismatch";

const [planArg = "ok", startsFile] = process.argv.slice(2);
const plan = planArg.split(",") as Behaviour[];
let start = 0;
if (startsFile) {
  start = existsSync(startsFile) ? Number(readFileSync(startsFile, "utf8")) || 0 : 0;
  writeFileSync(startsFile, String(start + 1));
}
const behaviour = plan[Math.min(start, plan.length - 1)]!;
const tokenMs = Number(process.env.STUB_TOKEN_MS ?? 5);
const heartbeatMs = Number(process.env.STUB_HEARTBEAT_MS ?? 100);

let silent = false;
let out = Promise.resolve(0);
function line(text: string): Promise<number> {
  if (silent) return out;
  out = out.then(() => Bun.write(Bun.stdout, text + "\n"));
  return out;
}
const send = (msg: object) => line(JSON.stringify(msg));

async function die(how: "exit" | "kill", code = 1, stderr?: string): Promise<never> {
  if (stderr) process.stderr.write(stderr + "\n");
  await out;
  if (how === "kill") process.kill(process.pid, "SIGKILL");
  process.exit(code);
}

const traceback = (what: string) =>
  `Traceback (most recent call last):\n  File "mlx_worker.py", line 1, in ${what}\nRuntimeError: stub worker ${what} failed on purpose (start ${start + 1})`;

const cancelled = new Set<string>();
const ended = new Set<string>();
const memory = { active_bytes: 1000, peak_bytes: 2000, cache_bytes: 0, prompt_cache_bytes: 0 };
let drafting = false;

async function generate(msg: Extract<ToWorker, { type: "generate" }>): Promise<void> {
  if (behaviour === "exit-on-generate") await die("kill", 1, traceback("generate"));
  if (behaviour === "hang-on-generate") { silent = true; return; }
  const max = msg.max_tokens ?? 16;
  await send({ type: "started", id: msg.id, prompt_tokens: 5, cached_tokens: 0, max_tokens: max });
  let finish: "stop" | "length" = "length";
  let i = 0;
  for (; i < max; i++) {
    if (cancelled.delete(msg.id)) return;
    if (ended.delete(msg.id)) { finish = "stop"; break; }
    if (i === 2 && behaviour === "exit-mid-generation") await die("kill");
    if (i === 2 && behaviour === "garbage-on-generate") await line("{not json");
    await send({ type: "text", id: msg.id, text: `${i ? " " : ""}w${i}` });
    await Bun.sleep(tokenMs);
  }
  await send({
    type: "done", id: msg.id, finish_reason: finish, prompt_tokens: 5, cached_tokens: 0, reasoning_tokens: 0,
    completion_tokens: i, prefill_ms: 1, decode_ms: i * tokenMs, peak_memory_bytes: memory.peak_bytes,
    ...(drafting ? { draft_tokens: i, draft_accepted_tokens: Math.max(0, i - 1) } : {}),
  });
}

function handle(msg: ToWorker): void {
  switch (msg.type) {
    case "load":
      if (behaviour === "exit-on-load") { void die("exit", 1, traceback("load")); return; }
      if (msg.draft?.includes("mismatch")) {
        void send({ type: "error", id: msg.id, code: "draft_vocabulary_mismatch", message: "the draft model's vocabulary differs from the model's (token 7 differs)" });
        return;
      }
      drafting = msg.draft !== undefined;
      void send({
        type: "loaded", id: msg.id, model_type: "stub", vocab_size: 256, has_chat_template: true, has_tool_calling: false,
        think_start: null, think_end: null, tool_call_start: null, tool_call_end: null, tool_parser: null,
        eos_token_ids: [0], bos_token_ids: [], load_ms: 1, memory,
      });
      return;
    case "generate": void generate(msg); return;
    case "cancel": cancelled.add(msg.id); return;
    case "end": ended.add(msg.id); return;
    case "tokenize": void send({ type: "tokens", id: msg.id, tokens: [...Buffer.from(msg.text)] }); return;
    case "detokenize": void send({ type: "text_of", id: msg.id, text: Buffer.from(msg.tokens).toString() }); return;
    case "chat_tokens": void send({ type: "tokens", id: msg.id, tokens: msg.messages.flatMap((m) => [...Buffer.from(m.content)]) }); return;
    case "memory": void send({ type: "memory", id: msg.id, running: 0, generated: 0, ...memory }); return;
    case "score": void send({ type: "scores", id: msg.id, logprobs: msg.tokens.slice(msg.first_scored).map(() => -1) }); return;
    case "shutdown": void die("exit", 0); return;
  }
}

async function serve(): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of Bun.stdin.stream()) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) !== -1) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let parsed: v.SafeParseResult<typeof ToWorker>;
      try {
        parsed = v.safeParse(ToWorker, JSON.parse(text));
      } catch {
        await send({ type: "fatal", message: "invalid message from LMX: not JSON" });
        await die("exit", 2);
        return;
      }
      if (!parsed.success) {
        await send({ type: "fatal", message: `invalid message from LMX: ${parsed.issues[0].message}` });
        await die("exit", 2);
        return;
      }
      handle(parsed.output);
    }
  }
  await die("exit", 0);
}

if (behaviour === "exit-at-start") await die("exit", 3, traceback("start"));
if (behaviour === "hang-at-start") {
  setInterval(() => undefined, 1 << 30);
} else {
  const heartbeat = setInterval(() => void send({ type: "heartbeat", steps: 0 }), heartbeatMs);
  heartbeat.unref();
  if (behaviour === "slow-start") await Bun.sleep(Number(process.env.STUB_DELAY_MS ?? 500));
  if (behaviour === "garbage") await line("Warning: this runtime prints to stdout");
  else await send({ type: "hello", protocol: behaviour === "protocol-mismatch" ? PROTOCOL_VERSION + 1 : PROTOCOL_VERSION, pid: process.pid, python: "stub", mlx: null, mlx_lm: null });
  await serve();
}
