// A strict reader for the XML property lists launchd reads: every tag must be closed in order and
// only plist elements are allowed, so a malformed agent file fails the test rather than launchd.

export type PlistValue = string | number | boolean | PlistValue[] | { [key: string]: PlistValue };

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function unescape(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos);/g, (_, name: string) => ENTITIES[name] as string);
}

type Token = { kind: "open" | "close" | "empty"; name: string } | { kind: "text"; text: string };

function tokenize(xml: string): Token[] {
  const body = xml.replace(/^\s*<\?xml[^>]*\?>\s*/, "").replace(/^<!DOCTYPE[^>]*>\s*/, "");
  const tokens: Token[] = [];
  const pattern = /<(\/?)([A-Za-z]+)((?:\s+[a-z]+="[^"]*")*)\s*(\/?)>|([^<]+)/g;
  let last = 0;
  for (let match = pattern.exec(body); match !== null; match = pattern.exec(body)) {
    if (match.index !== last) throw new Error(`unexpected markup at offset ${last}: ${JSON.stringify(body.slice(last, last + 40))}`);
    last = pattern.lastIndex;
    const [, slash, name, , selfClosing, text] = match;
    if (text !== undefined) {
      if (/[<>]/.test(text) || /&(?!(amp|lt|gt|quot|apos);)/.test(text)) throw new Error(`unescaped character in ${JSON.stringify(text)}`);
      if (text.trim() !== "") tokens.push({ kind: "text", text: unescape(text) });
      continue;
    }
    tokens.push({ kind: slash ? "close" : selfClosing ? "empty" : "open", name: name as string });
  }
  if (last !== body.length) throw new Error(`trailing markup at offset ${last}`);
  return tokens;
}

export function parsePlist(xml: string): PlistValue {
  const tokens = tokenize(xml);
  let pos = 0;
  const next = (): Token => {
    const token = tokens[pos++];
    if (token === undefined) throw new Error("plist ends early");
    return token;
  };
  const expectClose = (name: string): void => {
    const token = next();
    if (token.kind !== "close" || token.name !== name) throw new Error(`expected </${name}>, got ${JSON.stringify(token)}`);
  };
  const text = (name: string): string => {
    const token = tokens[pos];
    let value = "";
    if (token?.kind === "text") {
      value = token.text;
      pos++;
    }
    expectClose(name);
    return value;
  };
  const value = (): PlistValue => {
    const token = next();
    if (token.kind === "empty" && (token.name === "true" || token.name === "false")) return token.name === "true";
    if (token.kind !== "open") throw new Error(`expected a value, got ${JSON.stringify(token)}`);
    switch (token.name) {
      case "string":
        return text("string");
      case "integer": {
        const raw = text("integer");
        if (!/^-?\d+$/.test(raw)) throw new Error(`bad integer ${raw}`);
        return Number(raw);
      }
      case "array": {
        const items: PlistValue[] = [];
        while (!(tokens[pos]?.kind === "close" && (tokens[pos] as { name: string }).name === "array")) items.push(value());
        expectClose("array");
        return items;
      }
      case "dict": {
        const dict: Record<string, PlistValue> = {};
        for (;;) {
          const head = next();
          if (head.kind === "close" && head.name === "dict") return dict;
          if (head.kind !== "open" || head.name !== "key") throw new Error(`expected <key>, got ${JSON.stringify(head)}`);
          const key = text("key");
          if (key in dict) throw new Error(`duplicate key ${key}`);
          dict[key] = value();
        }
      }
      default:
        throw new Error(`unsupported plist element <${token.name}>`);
    }
  };
  const root = next();
  if (root.kind !== "open" || root.name !== "plist") throw new Error("not a plist");
  const result = value();
  expectClose("plist");
  if (pos !== tokens.length) throw new Error("content after </plist>");
  return result;
}
