import { useRef, useState } from "preact/hooks";
import { api, isAbort, sse } from "./api.ts";
import { errorText } from "./format.ts";
import { useLoad } from "./hooks.ts";
import type { List } from "./types.ts";

interface Turn {
  role: "user" | "assistant";
  content: string;
  reasoning?: string;
  stats?: string;
  error?: string;
}

interface Chunk {
  choices?: { delta?: { content?: string | null; reasoning_content?: string | null } }[];
  usage?: { completion_tokens?: number } | null;
  /** The engine's own decode rate (LMX's llama-server-style extension on the last chunk). */
  timings?: { predicted_per_second?: number } | null;
  error?: { message?: string };
}

/**
 * Time to first token and tokens/s of one reply. The rate is the server's decode rate when it sent
 * one: a fast model's chunks reach the page in bursts, so timing them here would overstate it.
 */
function stats(started: number, first: number | undefined, tokens: number, serverRate?: number): string {
  const now = performance.now();
  if (first === undefined) return `no tokens in ${((now - started) / 1000).toFixed(1)} s`;
  const genSeconds = (now - first) / 1000;
  const rate = serverRate !== undefined && serverRate > 0 ? serverRate.toFixed(1)
    : genSeconds > 0 && tokens > 1 ? ((tokens - 1) / genSeconds).toFixed(1) : "—";
  return `${tokens} tokens · ${rate} tokens/s · first token after ${((first - started) / 1000).toFixed(2)} s`;
}

export function Playground() {
  const models = useLoad(() => api<List<{ id: string; embedding_model?: boolean }>>("/v1/models"));
  const [model, setModel] = useState("");
  const [system, setSystem] = useState("");
  const [temperature, setTemperature] = useState("");
  const [maxTokens, setMaxTokens] = useState("");
  const [input, setInput] = useState("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const controller = useRef<AbortController | undefined>(undefined);
  const [streaming, setStreaming] = useState(false);
  const chosen = model || models.data?.data[0]?.id || "";

  const send = async (e: Event) => {
    e.preventDefault();
    const text = input.trim();
    if (!text || !chosen || streaming) return;
    const history: Turn[] = [...turns.filter((t) => !t.error), { role: "user", content: text }];
    const reply: Turn = { role: "assistant", content: "" };
    setTurns([...history, reply]);
    setInput("");
    const abort = new AbortController();
    controller.current = abort;
    setStreaming(true);
    const started = performance.now();
    let first: number | undefined;
    let chunks = 0;
    let usageTokens: number | undefined;
    let serverRate: number | undefined;
    const update = (patch: Partial<Turn>) => {
      Object.assign(reply, patch);
      setTurns([...history, { ...reply }]);
    };
    const body = {
      model: chosen,
      messages: [...(system.trim() ? [{ role: "system", content: system }] : []), ...history.map(({ role, content }) => ({ role, content }))],
      stream: true,
      stream_options: { include_usage: true },
      // Unset unless the user sets them: the model's defaults, and a reply that runs until the model stops.
      ...(temperature !== "" ? { temperature: Number(temperature) } : {}),
      ...(maxTokens !== "" ? { max_tokens: Number(maxTokens) } : {}),
    };
    try {
      for await (const { data } of sse("/v1/chat/completions", { method: "POST", body, signal: abort.signal })) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data) as Chunk;
        if (chunk.error) throw new Error(chunk.error.message ?? "the server reported an error");
        if (chunk.usage?.completion_tokens !== undefined) usageTokens = chunk.usage.completion_tokens;
        if (chunk.timings?.predicted_per_second !== undefined) serverRate = chunk.timings.predicted_per_second;
        const delta = chunk.choices?.[0]?.delta;
        const piece = delta?.content ?? "";
        const thought = delta?.reasoning_content ?? "";
        if (!piece && !thought) continue;
        first ??= performance.now();
        chunks++;
        update({ content: reply.content + piece, reasoning: thought ? (reply.reasoning ?? "") + thought : reply.reasoning });
      }
      update({ stats: stats(started, first, usageTokens ?? chunks, serverRate) });
    } catch (err) {
      if (isAbort(err)) update({ stats: `stopped · ${stats(started, first, chunks)}` });
      else update({ error: errorText(err) });
    } finally {
      setStreaming(false);
      controller.current = undefined;
    }
  };

  return (
    <section>
      <h2>Playground</h2>
      {models.error && <div class="bad">{models.error}</div>}
      <div class="row">
        <label class="grow">model
          <select aria-label="model" value={chosen} onChange={(e) => setModel(e.currentTarget.value)}>
            {models.data?.data.map((m) => <option key={m.id} value={m.id}>{m.id}</option>)}
          </select>
        </label>
        <label>temperature<input type="number" step="0.1" min="0" max="2" placeholder="default" value={temperature} onInput={(e) => setTemperature(e.currentTarget.value)} style="width:7rem" /></label>
        <label>max tokens<input type="number" min="1" placeholder="unset" value={maxTokens} onInput={(e) => setMaxTokens(e.currentTarget.value)} style="width:7rem" /></label>
      </div>
      <label style="display:flex;margin-top:.5rem">system prompt
        <textarea rows={2} value={system} onInput={(e) => setSystem(e.currentTarget.value)} />
      </label>
      <div id="chat">
        {turns.map((t, i) => (
          <div key={i} class={`msg ${t.role}`}>
            {t.reasoning && <details><summary>Thinking</summary>{t.reasoning}</details>}
            <div class="content">{t.content}</div>
            {t.stats && <div class="muted stats">{t.stats}</div>}
            {t.error && <div class="bad">{t.error}</div>}
          </div>
        ))}
      </div>
      <form class="row" onSubmit={send}>
        <textarea class="grow" rows={2} aria-label="message" placeholder="Message" value={input} onInput={(e) => setInput(e.currentTarget.value)}
          onKeyDown={(e) => { if (e.key === "Enter" && !e.shiftKey) void send(e); }} />
        {streaming
          ? <button type="button" onClick={() => controller.current?.abort()}>Stop</button>
          : <button class="primary" type="submit" disabled={!chosen}>Send</button>}
        <button type="button" disabled={streaming || turns.length === 0} onClick={() => setTurns([])}>Clear</button>
      </form>
    </section>
  );
}
