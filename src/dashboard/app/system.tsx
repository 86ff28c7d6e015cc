import { useEffect, useRef, useState } from "preact/hooks";
import { api, needsKey } from "./api.ts";
import { bytes, num } from "./format.ts";
import { Engines } from "./engines.tsx";
import { act, useLoad } from "./hooks.ts";
import type { Activity, List, Runtime, SystemInfo } from "./types.ts";

const POLL_MS = 2000;

/** Loaded models side by side on one bar scaled to physical memory, with the budget marked. */
function MemoryGauge({ sys, activity }: { sys: SystemInfo; activity: Activity | undefined }) {
  const total = sys.memory.total_bytes;
  const loaded = (activity?.models ?? []).filter((m) => m.loaded && m.memory_bytes);
  const pct = (n: number) => `${Math.min(100, (n / total) * 100)}%`;
  return (
    <>
      <div class="bar" title="loaded models, with the memory budget marked">
        {loaded.map((m) => <span key={m.id} title={`${m.id}: ${bytes(m.memory_bytes)}`} style={`width:${pct(m.memory_bytes ?? 0)}`} />)}
        <i style={`left:${pct(sys.memory.budget_bytes)}`} />
      </div>
      <div class="muted">
        {loaded.map((m) => `${m.id} ${bytes(m.memory_bytes)}`).join(" · ") || "no model loaded"} · budget {bytes(sys.memory.budget_bytes)} (red line) · physical {bytes(total)}, {bytes(sys.memory.free_bytes)} free
      </div>
    </>
  );
}

/** MLX has wheels for Apple silicon (Metal) and Linux (CPU backend): elsewhere the runtime is shown, never offered. */
function Runtimes({ installable }: { installable: boolean }) {
  const runtimes = useLoad(() => api<List<Runtime>>("/admin/v1/runtimes"));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const run = (name: string, op: "install" | "update") => {
    setBusy(true);
    void act(() => api(`/admin/v1/runtimes/${name}/${op}`, { method: "POST", body: {} }), setError, () => {
      setBusy(false);
      runtimes.reload();
    });
  };
  return (
    <>
      {runtimes.error && <div class="bad">{runtimes.error}</div>}
      {runtimes.data?.data.map((r) => (
        <div class="row" key={r.name}>
          <span class="grow">
            {r.name}: {r.installed ? Object.entries(r.packages).map(([k, v]) => `${k} ${v}`).join(", ") : "not installed"}
            {r.installed && !r.up_to_date && <span class="warn"> (differs from this lmx's pins)</span>}
            {r.device && <span class="muted"> on {r.device}</span>}
          </span>
          {!r.installed && installable && <button disabled={busy} onClick={() => run(r.name, "install")}>Install</button>}
          {!r.installed && !installable && <span class="muted">(Apple silicon and Linux only)</span>}
          {r.installed && !r.up_to_date && <button disabled={busy} onClick={() => run(r.name, "update")}>Update</button>}
        </div>
      ))}
      {busy && <span class="muted">working… (this can take minutes)</span>}
      {error && <div class="bad">{error}</div>}
    </>
  );
}

interface Rates {
  [model: string]: number;
}

/** Polls /admin/v1/activity; tokens/s is the growth of each model's generated-token total between polls. */
function useActivity(): { activity: Activity | undefined; rates: Rates; error: string | undefined } {
  const [activity, setActivity] = useState<Activity>();
  const [rates, setRates] = useState<Rates>({});
  const [error, setError] = useState<string>();
  const previous = useRef<Activity | undefined>(undefined);
  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      // Waiting for a key: asking again would only repeat the 401.
      if (needsKey.value) return;
      try {
        const next = await api<Activity>("/admin/v1/activity");
        if (stopped) return;
        const before = previous.current;
        if (before) {
          const dt = (Date.parse(next.time) - Date.parse(before.time)) / 1000;
          const r: Rates = {};
          for (const m of next.models) {
            const old = before.models.find((b) => b.id === m.id);
            if (old && dt > 0) r[m.id] = (m.generated_tokens_total - old.generated_tokens_total) / dt;
          }
          setRates(r);
        }
        previous.current = next;
        setActivity(next);
        setError(undefined);
      } catch (err) {
        if (!stopped) setError(err instanceof Error ? err.message : String(err));
      }
    };
    void poll();
    const timer = setInterval(() => void poll(), POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);
  return { activity, rates, error };
}

export function System() {
  const sys = useLoad(() => api<SystemInfo>("/admin/v1/system"));
  const { activity, rates, error } = useActivity();
  const s = sys.data;
  const shown = (activity?.models ?? []).filter((m) => m.loaded || m.requests_total > 0 || m.queued_requests > 0);
  return (
    <>
      <section>
        <h2>Memory</h2>
        {sys.error && <div class="bad">{sys.error}</div>}
        {s && <MemoryGauge sys={s} activity={activity} />}
      </section>
      <section>
        <h2>Activity</h2>
        {error && <div class="bad">{error}</div>}
        {activity && shown.length === 0 && <p class="muted">No model has served a request yet.</p>}
        {shown.length > 0 && (
          <div class="scroll">
            <table id="activity">
              <thead><tr><th>model</th><th>active</th><th>queued</th><th>tok/s</th><th>requests</th><th>tokens</th></tr></thead>
              <tbody>
                {shown.map((m) => (
                  <tr key={m.id} data-model={m.id}>
                    <td>{m.id}{m.loaded ? "" : <span class="muted"> (unloaded)</span>}</td>
                    <td>{m.active_requests}</td>
                    <td>{m.queued_requests}</td>
                    <td>{(rates[m.id] ?? 0).toFixed(1)}</td>
                    <td>{num(m.requests_total)}</td>
                    <td>{num(m.generated_tokens_total)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <h3>Recent errors</h3>
        {activity?.recent_errors.length === 0 && <p class="muted">None.</p>}
        {activity?.recent_errors.slice(0, 20).map((e, i) => (
          <div key={i} class="muted">
            <span class="bad">{e.source}{e.status ? ` ${e.status}` : ""}</span> {new Date(e.time).toLocaleTimeString()} {e.model ?? ""}: {e.message}
          </div>
        ))}
      </section>
      {s && (
        <section>
          <h2>Machine and engines</h2>
          <div>LMX {s.lmx_version} on {s.os.platform} {s.os.arch} ({s.os.release})</div>
          <div>CPU: {s.cpu.model}, {s.cpu.physical_cores} cores ({s.cpu.logical_cores} threads), {s.cpu.default_threads} used by default · accelerator: {s.accelerator}</div>
          {s.engines.map((e) => <div key={e.name}>{e.name} ({e.format}): node-llama-cpp {e.node_llama_cpp}, {e.platform}, {e.source}</div>)}
          <h3>llama.cpp engines</h3>
          <Engines />
          <h3>Runtimes</h3>
          <Runtimes installable={(s.os.platform === "darwin" && s.os.arch === "arm64") || s.os.platform === "linux"} />
        </section>
      )}
    </>
  );
}
