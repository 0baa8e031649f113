// test/llama_generate.mjs — generate text from an exported GGUF with llama.cpp itself, through npm's
// node-llama-cpp (prebuilt llama.cpp for linux-x64, CPU only; installed under .deps/npm by make deps).
//   node test/llama_generate.mjs MODEL.gguf "prompt" [N_TOKENS] [SEED]
import path from "node:path";
import url from "node:url";

const [modelPath, prompt, nArg, seedArg] = process.argv.slice(2);
if (!modelPath || prompt === undefined) {
    console.error("usage: node test/llama_generate.mjs MODEL.gguf PROMPT [N_TOKENS] [SEED]");
    process.exit(2);
}
const root = path.resolve(path.dirname(url.fileURLToPath(import.meta.url)), "..");
const lib = path.join(root, ".deps/npm/node_modules/node-llama-cpp/dist/index.js");
const { getLlama, LlamaCompletion } = await import(url.pathToFileURL(lib).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 512, threads: 2 });
const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
const text = await completion.generateCompletion(prompt, {
    maxTokens: Number(nArg || 200),
    temperature: 0.8,
    topK: 40,
    seed: Number(seedArg || 1),
});
process.stdout.write(prompt + text + "\n");
await context.dispose();
await model.dispose();
