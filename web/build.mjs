// npm run build: web/dist/ = the page, onnxruntime-web's wasm files, and the shipped models
// copied from runtime/models at build time (never duplicated in git), each with a JSON of
// its config read out of the .onnx file's own metadata: the .onnx stays the one source.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const models = join(here, "..", "runtime", "models");
const ortDist = join(here, "node_modules", "onnxruntime-web", "dist");
const METADATA_KEY = "adder.config";

// The adder.config entry of an ONNX ModelProto's metadata_props (field 14), read with a
// minimal protobuf walk: the page needs no protobuf library for one string.
export function onnxMetadata(bytes, key = METADATA_KEY) {
  let pos = 0;
  const varint = () => {
    let value = 0n;
    let shift = 0n;
    for (;;) {
      const byte = bytes[pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
      shift += 7n;
    }
  };
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const entry = (end) => {
    const found = {};
    while (pos < end) {
      const tag = Number(varint());
      const length = Number(varint()); // key (1) and value (2) are both strings
      found[tag >> 3] = decoder.decode(bytes.subarray(pos, pos + length));
      pos += length;
    }
    return found;
  };
  while (pos < bytes.length) {
    const tag = Number(varint());
    const field = tag >> 3;
    const wire = tag & 7;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const length = Number(varint());
      if (field === 14) {
        const { 1: k, 2: v } = entry(pos + length);
        if (k === key) return v;
      } else pos += length;
    } else throw new Error(`unexpected protobuf wire type ${wire}`);
  }
  throw new Error(`no ${key} in the model's metadata`);
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "ort"), { recursive: true });
mkdirSync(join(dist, "models"), { recursive: true });
for (const file of readdirSync(join(here, "src"))) copyFileSync(join(here, "src", file), join(dist, file));
for (const file of ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]) {
  copyFileSync(join(ortDist, file), join(dist, "ort", file));
}
const names = [];
for (const file of readdirSync(models).sort()) {
  if (!file.endsWith(".onnx") || file.endsWith(".batch.onnx") || file.endsWith(".single.onnx")) continue;
  const name = file.slice(0, -".onnx".length);
  const bytes = readFileSync(join(models, file));
  const text = onnxMetadata(bytes);
  const config = JSON.parse(text);
  if (config.layout === "pairs") {
    // A thousand nines do not survive as a JSON number in JavaScript: kept as text (grammar.js).
    config.max_operand = /"max_operand": *([0-9]+)/.exec(text)[1];
  }
  delete config.training; // the record stays in the .onnx; the page needs the grammar
  copyFileSync(join(models, file), join(dist, "models", file));
  writeFileSync(join(dist, "models", `${name}.json`), JSON.stringify(config, null, 2) + "\n");
  names.push(name);
}
writeFileSync(join(dist, "models", "index.json"), JSON.stringify(names) + "\n");
console.log(`built ${dist}: page, onnxruntime-web wasm, models ${names.join(", ")}`);
