// Parity probe for tests/test_edge_functions.py: reads {base, version, mode, features: [json...]}
// on stdin, answers {inputs, outputs} on stdout: the input vector the functions build from each
// feature JSON and the ONNX output they compute from it, with the functions' own code.
import { loadModel, runUserTower } from "../../supabase/functions/_shared/artifact.ts";

const req = JSON.parse(await new Response(Deno.stdin.readable).text());
const m = await loadModel(req.version, req.mode, req.base);
const inputs: number[][] = [], outputs: number[][] = [];
for (const j of req.features) {
  const { input, output } = await runUserTower(m, j);
  inputs.push(Array.from(input));
  outputs.push(Array.from(output));
}
console.log(JSON.stringify({ inputs, outputs }));
