// The npm packages the functions use, pinned to the versions in package.json (and its lock file):
// Supabase's runtime resolves these `npm:` specifiers itself; locally `twotower edge serve` runs
// Deno against the node_modules that `npm ci` installed, with no network.
export * as ort from "npm:onnxruntime-web@1.30.0/wasm";
export * as jose from "npm:jose@6.2.18";
export { default as postgres } from "npm:postgres@3.4.9";
