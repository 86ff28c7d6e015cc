import { useState } from "preact/hooks";
import { apiKey, rememberKey } from "./api.ts";

/** Shown after a 401: the key is kept for this tab only (sessionStorage). */
export function KeyPrompt() {
  const [value, setValue] = useState("");
  const submit = (e: Event) => {
    e.preventDefault();
    if (value.trim()) rememberKey(value.trim());
  };
  return (
    <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="key-title">
      <form onSubmit={submit}>
        <h2 id="key-title">API key needed</h2>
        <p class="muted">{apiKey.value ? "The key this tab used was refused." : "This server requires an API key."} It is kept for this browser tab only, until you close it. Use an admin key for the admin pages.</p>
        <div class="row">
          <input class="grow" type="password" autocomplete="off" aria-label="API key" placeholder="lmx-…" value={value} onInput={(e) => setValue(e.currentTarget.value)} autofocus />
          <button class="primary" type="submit">Use key</button>
        </div>
      </form>
    </div>
  );
}
