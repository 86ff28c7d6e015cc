import { useEffect, useState } from "preact/hooks";
import { api } from "./api.ts";
import { lastEvent, progress } from "./events.ts";
import { bytes, seconds } from "./format.ts";
import { act, useLoad } from "./hooks.ts";
import type { DownloadJob, List, ProbeJob } from "./types.ts";

const ACTIVE = new Set(["queued", "running"]);

function Download({ job, reload }: { job: DownloadJob; reload: () => void }) {
  const [error, setError] = useState<string>();
  const live = ACTIVE.has(job.state) ? progress.value[job.id] : undefined;
  const done = live?.bytesDone ?? job.bytes_done;
  const total = live?.bytesTotal ?? job.bytes_total ?? 0;
  const pct = job.state === "done" ? 100 : total > 0 ? Math.min(100, (done / total) * 100) : 0;
  return (
    <div class="card" data-download={job.id} data-state={job.state}>
      <div class="row">
        <strong class="grow">{job.model}</strong>
        <span class={job.state === "failed" ? "tag bad" : job.state === "done" ? "tag ok" : "tag"}>{job.state}</span>
      </div>
      <div class="bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)}>
        <span style={`width:${pct}%`} />
      </div>
      <div class="muted">
        {bytes(done)} of {bytes(total)} ({pct.toFixed(0)}%)
        {live && <> · {bytes(live.rate)}/s · {live.etaSeconds === null ? "" : `${seconds(live.etaSeconds)} left`}</>}
        {live?.retrying && <> · retrying: {live.retrying}</>}
      </div>
      {job.error && <div class="bad">{job.error}</div>}
      <div class="row" style="margin-top:.3rem">
        {ACTIVE.has(job.state) && <button onClick={() => void act(() => api(`/admin/v1/downloads/${job.id}`, { method: "DELETE" }), setError, reload)}>Cancel</button>}
        {(job.state === "failed" || job.state === "cancelled") && (
          <button onClick={() => void act(() => api("/admin/v1/downloads", { method: "POST", body: { model: job.model } }), setError, reload)}>Retry</button>
        )}
      </div>
      {error && <div class="bad">{error}</div>}
    </div>
  );
}

function Probe({ job }: { job: ProbeJob }) {
  return (
    <div class="card" data-probe={job.id}>
      <div class="row">
        <strong class="grow">{job.model}</strong>
        <span class="tag">{job.state}</span>
        {job.result && <span class="ok">tested context {job.result.tested_context_length}</span>}
      </div>
      {job.error && <div class="bad">{job.error}</div>}
      {job.steps.length > 0 && (
        <div class="scroll">
          <table>
            <thead><tr><th>context</th><th>loads</th><th>works</th><th>ms</th><th>detail</th></tr></thead>
            <tbody>
              {job.steps.map((s, i) => (
                <tr key={i}><td>{s.context_length}</td><td>{s.loads ? "yes" : "no"}</td><td>{s.works ? "yes" : "no"}</td><td>{Math.round(s.ms)}</td><td>{s.detail}</td></tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

export function Downloads() {
  const downloads = useLoad(() => api<List<DownloadJob>>("/admin/v1/downloads"));
  const probes = useLoad(() => api<List<ProbeJob>>("/admin/v1/probes"));
  const event = lastEvent.value;
  useEffect(() => {
    if (!event) return;
    // Progress events only move the bars; a job changing state changes the list.
    if (event.type.startsWith("download.") && event.type !== "download.progress") downloads.reload();
    if (event.type.startsWith("probe.")) probes.reload();
  }, [event]);
  return (
    <>
      <section>
        <h2>Downloads</h2>
        {downloads.error && <div class="bad">{downloads.error}</div>}
        {downloads.data?.data.length === 0 && <p class="muted">No downloads yet: pull a model from the Models page.</p>}
        {downloads.data?.data.map((j) => <Download key={j.id} job={j} reload={downloads.reload} />)}
      </section>
      <section>
        <h2>Probe jobs</h2>
        {probes.error && <div class="bad">{probes.error}</div>}
        {probes.data?.data.length === 0 && <p class="muted">No probes in this server run.</p>}
        {probes.data?.data.map((j) => <Probe key={j.id} job={j} />)}
      </section>
    </>
  );
}
