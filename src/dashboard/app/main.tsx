// The dashboard's entry: hash routes (each view has a stable URL that opens it), the key prompt and
// the one events stream.
import { signal } from "@preact/signals";
import { render } from "preact";
import { useEffect } from "preact/hooks";
import { keyEpoch, needsKey } from "./api.ts";
import { Downloads } from "./downloads.tsx";
import { connected, startEvents, stopEvents } from "./events.ts";
import { KeyPrompt } from "./key-prompt.tsx";
import { Models } from "./models.tsx";
import { Playground } from "./playground.tsx";
import { Settings } from "./settings.tsx";
import { System } from "./system.tsx";

const VIEWS = { models: Models, downloads: Downloads, system: System, playground: Playground, settings: Settings } as const;
type View = keyof typeof VIEWS;
const LABELS: Record<View, string> = { models: "Models", downloads: "Downloads", system: "System", playground: "Playground", settings: "Settings" };

const viewOf = (hash: string): View => {
  const name = hash.replace(/^#\/?/, "");
  return name in VIEWS ? (name as View) : "models";
};

const route = signal<View>(viewOf(location.hash));
addEventListener("hashchange", () => (route.value = viewOf(location.hash)));

function App() {
  const epoch = keyEpoch.value;
  // The stream starts again with each new key: the last one ran with the old key, or a 401 ended it.
  useEffect(() => {
    startEvents();
    return stopEvents;
  }, [epoch]);
  const current = route.value;
  const Current = VIEWS[current];
  return (
    <>
      <header>
        <strong>LMX</strong>
        <nav>
          {(Object.keys(VIEWS) as View[]).map((v) => <a key={v} href={`#/${v}`} class={v === current ? "on" : ""}>{LABELS[v]}</a>)}
        </nav>
        <span class="muted" title="the live events stream">{connected.value ? "● live" : "○ offline"}</span>
      </header>
      <main key={current}>
        <Current />
      </main>
      {needsKey.value && <KeyPrompt />}
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
