// The Adder for the browser: onnxruntime-web (wasm) plus the ported grammar and codec.
//
//   const adder = await Adder.load("default");
//   await adder.answer("50+11");            // 61, or throws QueryError
//   await adder.results(["1+1", "oops"]);   // [{answer: 2}, {error: "..."}], one per query

import * as ort from "./ort/ort.wasm.min.mjs";
import { Codec } from "./codec.js";
import { PairsCodec } from "./layout.js";
import { QueryError } from "./grammar.js";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1; // a plain static server sends no COOP/COEP headers: no wasm threads
const CHUNK = 4096; // rows per session.run

export class Adder {
  constructor(name, config, session) {
    this.name = name;
    this.config = config;
    this.session = session;
    this.codec = config.layout === "pairs" ? new PairsCodec(config) : new Codec(config);
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
  }

  static async load(name, base = new URL("./models/", import.meta.url).href) {
    const response = await fetch(`${base}${name}.json`);
    if (!response.ok) throw new Error(`no model named ${name}`);
    const config = await response.json();
    const session = await ort.InferenceSession.create(`${base}${name}.onnx`, { executionProviders: ["wasm"] });
    return new Adder(name, config, session);
  }

  async run(expressions) {
    const { data, dims, type } = this.codec.encode(expressions);
    const output = await this.session.run({ [this.inputName]: new ort.Tensor(type, data, dims) });
    const probabilities = output[this.outputName];
    return this.codec.decode(probabilities.data, expressions.length, probabilities.dims);
  }

  async answer(query) {
    const expression = this.codec.parse(query);
    const [value] = await this.run([expression]);
    if (value === null) throw this.codec.noAnswer(query);
    return value;
  }

  // One result per query, in order: {answer} or {error} (the same words as the Python runtime).
  async results(queries) {
    const out = new Array(queries.length);
    for (let start = 0; start < queries.length; start += CHUNK) {
      const rows = [];
      const expressions = [];
      for (let i = start; i < Math.min(start + CHUNK, queries.length); i++) {
        try {
          expressions.push(this.codec.parse(queries[i]));
          rows.push(i);
        } catch (error) {
          if (!(error instanceof QueryError)) throw error;
          out[i] = { error: error.message };
        }
      }
      if (expressions.length) {
        const values = await this.run(expressions);
        rows.forEach((row, k) => {
          out[row] = values[k] === null ? { error: this.codec.noAnswer(queries[row]).message } : { answer: values[k] };
        });
      }
    }
    return out;
  }
}

export { QueryError };
