import { useCallback, useEffect, useState } from "preact/hooks";
import { keyEpoch } from "./api.ts";
import { errorText } from "./format.ts";

export interface Loaded<T> {
  data: T | undefined;
  error: string | undefined;
  reload: () => void;
}

/** Loads `fn` on mount, again whenever the key changes and whenever `reload` is called. */
export function useLoad<T>(fn: () => Promise<T>): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const epoch = keyEpoch.value;
  const reload = useCallback(() => {
    fn().then((d) => {
      setData(d);
      setError(undefined);
    }, (err: unknown) => setError(errorText(err)));
    // fn is a fresh closure each render; the epoch is what should trigger a load
  }, [epoch]);
  useEffect(reload, [reload]);
  return { data, error, reload };
}

/** Runs an action, shows its error through `onError`, and reports when it is done. */
export async function act(run: () => Promise<unknown>, onError: (message: string | undefined) => void, after?: () => void): Promise<void> {
  onError(undefined);
  try {
    await run();
  } catch (err) {
    onError(errorText(err));
  }
  after?.();
}
