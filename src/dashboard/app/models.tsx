import { useEffect, useState } from "preact/hooks";
import { api } from "./api.ts";
import { lastEvent } from "./events.ts";
import { bytes, num } from "./format.ts";
import { act, useLoad } from "./hooks.ts";
import type { HubResult, List, ManagedModel } from "./types.ts";

const path = (id: string) => `/admin/v1/models/${id.split("/").map(encodeURIComponent).join("/")}`;

function ModelCard({ m, reload }: { m: ManagedModel; reload: () => void }) {
  const [ctx, setCtx] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const loaded = m.state === "ready";
  const run = (fn: () => Promise<unknown>) => {
    setBusy(true);
    void act(fn, setError, () => {
      setBusy(false);
      reload();
    });
  };
  const load = () => run(() => api(`${path(m.id)}/load`, { method: "POST", body: ctx ? { context_length: Number(ctx) } : {} }));
  const remove = () => {
    if (confirm(`Delete ${m.id}? Files LMX downloaded are removed; imported models are only forgotten.`)) run(() => api(path(m.id), { method: "DELETE" }));
  };
  const memory = m.memory_bytes ?? m.tested_memory_bytes;
  return (
    <div class="card" data-model={m.id}>
      <div class="row">
        <strong class="grow">{m.id}</strong>
        <span class={loaded ? "tag ok" : m.state === "failed" ? "tag bad" : "tag"} data-state={m.state}>{loaded ? "loaded" : m.state}</span>
      </div>
      <div class="muted">
        <span class="tag">{m.format}</span>
        {m.quantization && <span class="tag">{m.quantization}</span>}
        {m.architecture && <span class="tag">{m.architecture}</span>}
        {m.has_chat_template && <span class="tag">chat</span>}
        {m.embedding_model && <span class="tag">embeddings</span>}
        {" "}{bytes(m.size_bytes)} on disk · context declared {num(m.max_context_length)}, tested {num(m.tested_context_length)}
        {loaded && <> · loaded at {num(m.loaded_context_length)}</>}
        {memory !== null && <> · memory {bytes(memory)}{loaded ? "" : " at the tested context"}</>}
        {loaded && <> · {m.active_requests} active, {m.queued_requests} queued</>}
      </div>
      {m.error && <div class="bad">{m.error}</div>}
      <div class="row" style="margin-top:.4rem">
        {!loaded && (
          <input type="number" min="1" placeholder="context length" aria-label="context length" value={ctx} onInput={(e) => setCtx(e.currentTarget.value)} style="width:9rem" />
        )}
        {!loaded && <button class="primary" disabled={busy} onClick={load}>Load</button>}
        {loaded && <button disabled={busy} onClick={() => run(() => api(`${path(m.id)}/unload`, { method: "POST" }))}>Unload</button>}
        <button disabled={busy} onClick={() => run(() => api(`${path(m.id)}/probe`, { method: "POST", body: {} }))}>Probe</button>
        <button class="danger" disabled={busy} onClick={remove}>Delete</button>
        {busy && <span class="muted">working…</span>}
      </div>
      {error && <div class="bad">{error}</div>}
    </div>
  );
}

function HubSearch() {
  const [q, setQ] = useState("");
  const [results, setResults] = useState<HubResult[]>();
  const [error, setError] = useState<string>();
  const [pulled, setPulled] = useState<string>();
  const search = (e: Event) => {
    e.preventDefault();
    void act(async () => setResults((await api<List<HubResult>>(`/admin/v1/hub/search?q=${encodeURIComponent(q)}&limit=10`)).data), setError);
  };
  const pull = (spec: string) =>
    void act(async () => {
      await api("/admin/v1/downloads", { method: "POST", body: { model: spec } });
      setPulled(spec);
    }, setError);
  return (
    <section>
      <h2>Hugging Face</h2>
      <form class="row" onSubmit={search}>
        <input class="grow" type="search" placeholder="search GGUF and MLX models" aria-label="hub search" value={q} onInput={(e) => setQ(e.currentTarget.value)} />
        <button class="primary" type="submit" disabled={!q.trim()}>Search</button>
      </form>
      {error && <div class="bad">{error}</div>}
      {pulled && <div class="banner">Pulling {pulled}: follow it under <a href="#/downloads">Downloads</a>.</div>}
      {results?.length === 0 && <p class="muted">Nothing found.</p>}
      {results?.map((r) => (
        <div class="card" key={r.repo} data-repo={r.repo}>
          <div class="row">
            <strong class="grow">{r.repo}</strong>
            <span class="tag">{r.format}</span>
            {r.gated && <span class="tag warn">gated</span>}
            <span class="muted">{num(r.downloads)} downloads</span>
          </div>
          <div class="scroll">
            <table>
              <tbody>
                {r.files.filter((f) => !f.mmproj).map((f) => (
                  <tr key={f.path}>
                    <td><code>{f.path}</code></td>
                    <td>{bytes(f.size)}</td>
                    <td class={f.fits === false ? "bad" : "ok"}>{f.fits === null ? "" : f.fits ? "fits" : "too big"}</td>
                    <td>{r.format === "gguf" && <button onClick={() => pull(`${r.repo}:${f.path}`)}>Pull</button>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {r.format !== "gguf" && r.defaultSelection && (
            <div class="row"><span class="muted grow">{bytes(r.defaultSelection.bytes)} in all · {r.fits ? "fits" : "too big for this machine"}</span><button onClick={() => pull(r.repo)}>Pull</button></div>
          )}
        </div>
      ))}
    </section>
  );
}

const RELOAD_ON = /^(model\.|probe\.done|download\.done)/;

export function Models() {
  const models = useLoad(() => api<List<ManagedModel>>("/admin/v1/models"));
  const event = lastEvent.value;
  useEffect(() => {
    if (event && RELOAD_ON.test(event.type)) models.reload();
  }, [event]);
  return (
    <>
      <section>
        <h2>Local models</h2>
        {models.error && <div class="bad">{models.error}</div>}
        {models.data?.data.length === 0 && <p class="muted">No models yet: search the hub below, or start lmx with --model.</p>}
        {models.data?.data.map((m) => <ModelCard key={m.id} m={m} reload={models.reload} />)}
      </section>
      <HubSearch />
    </>
  );
}
