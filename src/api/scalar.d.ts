// Scalar's single-file browser build, imported `with { type: "file" }`: its path, embedded by `bun build --compile`.
declare module "*/api-reference/dist/browser/standalone.js" {
  const path: string;
  export default path;
}
