// Checks a value against the JSON Schema subset OpenAI's structured outputs use: type, enum,
// const, properties/required/additionalProperties, items, string/number/array bounds, pattern,
// anyOf/oneOf/allOf and local $ref. MLX sampling cannot be grammar-constrained, so replies that
// must follow a schema are checked with this after generation. Keywords outside the subset are
// ignored (as annotations), never guessed at.

import type { JsonSchema } from "./request.ts";

type Schema = JsonSchema | boolean;

function typeOf(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "array";
  if (typeof x === "number") return Number.isInteger(x) ? "integer" : "number";
  return typeof x;
}

function matchesType(x: unknown, t: string): boolean {
  const actual = typeOf(x);
  return actual === t || (t === "number" && actual === "integer");
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function resolveRef(root: JsonSchema, ref: string): Schema | undefined {
  if (!ref.startsWith("#")) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(1).split("/").filter(Boolean)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return typeof node === "boolean" || (node !== null && typeof node === "object") ? (node as Schema) : undefined;
}

const num = (s: JsonSchema, k: string) => (typeof s[k] === "number" ? (s[k] as number) : undefined);

/** The first mismatch as "path: what is wrong", or undefined when `value` conforms. */
export function validateJsonSchema(value: unknown, schema: JsonSchema): string | undefined {
  return check(value, schema, schema, "$", 0);
}

function check(x: unknown, schema: Schema, root: JsonSchema, path: string, depth: number): string | undefined {
  if (depth > 64) return `${path}: schema nests too deeply`;
  if (schema === true) return undefined;
  if (schema === false) return `${path}: no value is allowed here`;
  const s = schema;
  if (typeof s.$ref === "string") {
    const target = resolveRef(root, s.$ref);
    if (target === undefined) return `${path}: cannot resolve $ref ${s.$ref}`;
    const err = check(x, target, root, path, depth + 1);
    if (err) return err;
  }
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    if (!types.some((t) => matchesType(x, t))) return `${path}: expected ${types.join(" or ")}, got ${typeOf(x)}`;
  }
  if (Array.isArray(s.enum) && !s.enum.some((e) => deepEqual(e, x))) return `${path}: must be one of ${JSON.stringify(s.enum)}`;
  if ("const" in s && !deepEqual(s.const, x)) return `${path}: must be ${JSON.stringify(s.const)}`;
  for (const key of ["allOf", "anyOf", "oneOf"] as const) {
    const list = s[key];
    if (!Array.isArray(list)) continue;
    const errors = list.map((sub) => check(x, sub as Schema, root, path, depth + 1));
    const passed = errors.filter((e) => e === undefined).length;
    if (key === "allOf" && passed < list.length) return errors.find((e) => e !== undefined);
    if (key === "anyOf" && passed === 0) return `${path}: matches none of anyOf (${errors[0]})`;
    if (key === "oneOf" && passed !== 1) return `${path}: must match exactly one of oneOf, matches ${passed}`;
  }
  if (typeof x === "string") {
    const min = num(s, "minLength");
    const max = num(s, "maxLength");
    const length = [...x].length;
    if (min !== undefined && length < min) return `${path}: shorter than ${min} characters`;
    if (max !== undefined && length > max) return `${path}: longer than ${max} characters`;
    if (typeof s.pattern === "string") {
      let re: RegExp | undefined;
      try {
        re = new RegExp(s.pattern, "u");
      } catch {
        re = undefined;
      }
      if (re && !re.test(x)) return `${path}: does not match the pattern ${s.pattern}`;
    }
  }
  if (typeof x === "number") {
    const min = num(s, "minimum");
    const max = num(s, "maximum");
    const exMin = num(s, "exclusiveMinimum");
    const exMax = num(s, "exclusiveMaximum");
    if (min !== undefined && x < min) return `${path}: below the minimum ${min}`;
    if (max !== undefined && x > max) return `${path}: above the maximum ${max}`;
    if (exMin !== undefined && x <= exMin) return `${path}: not above ${exMin}`;
    if (exMax !== undefined && x >= exMax) return `${path}: not below ${exMax}`;
  }
  if (Array.isArray(x)) {
    const min = num(s, "minItems");
    const max = num(s, "maxItems");
    if (min !== undefined && x.length < min) return `${path}: fewer than ${min} items`;
    if (max !== undefined && x.length > max) return `${path}: more than ${max} items`;
    const prefix = Array.isArray(s.prefixItems) ? (s.prefixItems as Schema[]) : [];
    for (const [i, item] of x.entries()) {
      const sub = i < prefix.length ? prefix[i] : (s.items as Schema | undefined);
      if (sub === undefined) continue;
      const err = check(item, sub, root, `${path}[${i}]`, depth + 1);
      if (err) return err;
    }
  }
  if (x !== null && typeof x === "object" && !Array.isArray(x)) {
    const obj = x as Record<string, unknown>;
    const props = (s.properties ?? {}) as Record<string, Schema>;
    for (const key of Array.isArray(s.required) ? (s.required as string[]) : []) {
      if (!(key in obj)) return `${path}: missing required property '${key}'`;
    }
    for (const [key, val] of Object.entries(obj)) {
      const sub = props[key];
      if (sub !== undefined) {
        const err = check(val, sub, root, `${path}.${key}`, depth + 1);
        if (err) return err;
      } else if (s.additionalProperties !== undefined) {
        const err = check(val, s.additionalProperties as Schema, root, `${path}.${key}`, depth + 1);
        if (err) return s.additionalProperties === false ? `${path}: unexpected property '${key}'` : err;
      }
    }
  }
  return undefined;
}
