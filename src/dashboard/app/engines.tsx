import { useState } from "preact/hooks";
import { api } from "./api.ts";
import { act, useLoad } from "./hooks.ts";
import type { Engines as EngineList } from "./types.ts";

/**
 * llama.cpp engines as `lmx engine list` shows them, with its update and use actions. A server
 * switches at its next model load, so a switch here shows as the selected row at once.
 */
export function Engines() {
  const engines = useLoad(() => api<EngineList>("/admin/v1/engines"));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [note, setNote] = useState<string>();
  const run = (path: string, body: unknown) => {
    setBusy(true);
    setNote(undefined);
    void act(async () => setNote((await api<{ note: string }>(path, { method: "POST", body })).note), setError, () => {
      setBusy(false);
      engines.reload();
    });
  };
  // Fetching with check=true refreshes the server's cached release list, which later lists read.
  const checkNow = () => {
    setBusy(true);
    setNote(undefined);
    void act(() => api("/admin/v1/engines?check=true"), setError, () => {
      setBusy(false);
      engines.reload();
    });
  };
  return (
    <>
      {engines.error && <div class="bad">{engines.error}</div>}
      {engines.data?.data.map((e) => (
        <div class="row" key={e.version} data-engine={e.version}>
          <span class="grow">
            {e.selected ? "● " : ""}{e.version}{e.llama_cpp ? ` (llama.cpp ${e.llama_cpp})` : ""}
            <span class="muted">
              {[e.embedded && " embedded", e.installed && !e.embedded && " installed", e.build && ` built from ${e.build.ref}`,
                e.available && !e.installed && " published", !e.compatible && " incompatible"].filter(Boolean).join(",")}
            </span>
          </span>
          {e.compatible && e.installed && !e.selected && <button disabled={busy} onClick={() => run("/admin/v1/engines/use", { version: e.version })}>Use</button>}
          {e.compatible && e.available && !e.installed && <button disabled={busy} onClick={() => run("/admin/v1/engines/update", { version: e.version })}>Install and use</button>}
        </div>
      ))}
      <div class="row">
        <button disabled={busy} onClick={checkNow}>Check for engine updates</button>
        {engines.data && <span class="muted">{engines.data.manifest_updated ? `release list of ${engines.data.manifest_updated.slice(0, 10)}` : "release list not fetched yet"}</span>}
      </div>
      {busy && <span class="muted">working… (a download can take minutes)</span>}
      {note && <div class="muted">{note}</div>}
      {error && <div class="bad">{error}</div>}
    </>
  );
}
