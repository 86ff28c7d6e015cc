import { useState } from "preact/hooks";
import { api, apiKey, rememberKey } from "./api.ts";
import { act, useLoad } from "./hooks.ts";
import type { ApiKey, List, SystemInfo } from "./types.ts";

interface Created {
  id: string;
  key: string;
  scope: string;
  note: string;
  admin_key?: { id: string; key: string };
}

function Keys() {
  const keys = useLoad(() => api<List<ApiKey>>("/admin/v1/keys"));
  const [name, setName] = useState("");
  const [scope, setScope] = useState<"admin" | "inference">("inference");
  const [created, setCreated] = useState<Created>();
  const [error, setError] = useState<string>();
  const create = (e: Event) => {
    e.preventDefault();
    void act(async () => {
      const c = await api<Created>("/admin/v1/keys", { method: "POST", body: { scope, ...(name.trim() ? { name: name.trim() } : {}) } });
      setCreated(c);
      setName("");
      // The first key turns authentication on: this tab keeps working with the admin key it came with.
      if (!apiKey.value) {
        const admin = c.admin_key?.key ?? (c.scope === "admin" ? c.key : undefined);
        if (admin) rememberKey(admin);
      }
    }, setError, keys.reload);
  };
  const revoke = (k: ApiKey) => {
    if (confirm(`Revoke ${k.name ?? k.prefix}? Clients using it stop working.`)) void act(() => api(`/admin/v1/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" }), setError, keys.reload);
  };
  const active = keys.data?.data.filter((k) => k.revokedAt === null) ?? [];
  return (
    <section>
      <h2>API keys</h2>
      {keys.error && <div class="bad">{keys.error}</div>}
      {keys.data && active.length === 0 && <p class="muted">No keys: every client on an allowed host can use the server. Creating one turns keys on for all APIs.</p>}
      {active.map((k) => (
        <div class="row card" key={k.id} data-key={k.id}>
          <span class="grow"><strong>{k.name ?? k.id}</strong> <span class="tag">{k.scope}</span> <code>{k.prefix}…</code>
            <span class="muted"> created {new Date(k.createdAt).toLocaleString()}{k.lastUsedAt ? `, last used ${new Date(k.lastUsedAt).toLocaleString()}` : ""}</span></span>
          <button class="danger" onClick={() => revoke(k)}>Revoke</button>
        </div>
      ))}
      <form class="row" onSubmit={create} style="margin-top:.5rem">
        <input class="grow" placeholder="name (optional)" aria-label="key name" value={name} maxLength={100} onInput={(e) => setName(e.currentTarget.value)} />
        <select aria-label="scope" value={scope} onChange={(e) => setScope(e.currentTarget.value === "admin" ? "admin" : "inference")}>
          <option value="inference">inference</option>
          <option value="admin">admin</option>
        </select>
        <button class="primary" type="submit">Create key</button>
      </form>
      {created && (
        <div class="banner" id="created-key">
          <div>{created.note}</div>
          <div><span class="tag">{created.scope}</span><code>{created.key}</code></div>
          {created.admin_key && <div><span class="tag">admin</span><code>{created.admin_key.key}</code> (this tab now uses it)</div>}
        </div>
      )}
      {error && <div class="bad">{error}</div>}
      <p class="muted">
        {apiKey.value ? "This tab sends a key (kept until the tab closes). " : "This tab sends no key. "}
        {apiKey.value && <button onClick={() => rememberKey(null)}>Forget it</button>}
      </p>
    </section>
  );
}

function Exposure() {
  const sys = useLoad(() => api<SystemInfo>("/admin/v1/system"));
  const s = sys.data?.server;
  return (
    <section>
      <h2>Network</h2>
      {sys.error && <div class="bad">{sys.error}</div>}
      {s && (
        <>
          <div>Bound to <code>{s.bound_host}</code> at <code>{location.host}</code></div>
          {!s.loopback_only && (
            <div class={s.auth_required ? "banner" : "banner bad"} id="exposed">
              This server listens beyond this machine ({s.bound_host}): anyone who can reach it on the network can use it
              {s.auth_required ? " with a key." : ". No API key is set, so that means everyone: create one below."}
            </div>
          )}
          <div>Keys: {s.auth_required ? <span class="ok">required</span> : <span class="warn">off</span>}</div>
          <div>CORS: {s.cors_origins.length === 0 ? "off (only this server's own pages and non-browser clients)" : s.cors_origins.join(", ")}
            {s.cors_origins.includes("*") && <span class="warn"> — any web page may call this server</span>}</div>
          {s.allowed_hosts.length > 0 && <div>Extra allowed host names: {s.allowed_hosts.join(", ")}</div>}
        </>
      )}
    </section>
  );
}

export function Settings() {
  return (
    <>
      <Exposure />
      <Keys />
    </>
  );
}
