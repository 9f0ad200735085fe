// The aligned-pairs layout: a port of runtime/layout.py.
//
// "123+45" is read as the pairs (3, 5), (2, 4), (1, 0) and a last (0, 0), each step a
// 20-wide one-hot (a's digit, then b's); the model writes one digit a step, lowest first,
// the last step's being the final carry. A batch runs for as many steps as its longest
// query needs (the graph's step dimension is free). Answers past 2**53 are BigInts.

import { Grammar, QueryError, pyRepr } from "./grammar.js";

const FEATURES = 20;

export class PairsCodec {
  constructor(config) {
    this.config = config;
    this.grammar = new Grammar(config);
    this.alphabet = "0123456789" + config.operators + " ";
    this.operandWidth = config.input_length - 1;
    if (config.alphabet !== this.alphabet || config.output_length !== config.input_length) {
      throw new Error("model config is inconsistent with this page's codec (alphabet or lengths differ)");
    }
  }

  parse(query) {
    return this.grammar.parse(query);
  }

  // Float32 one-hot pairs [rows, steps, 20], steps the longest operand's digits and one.
  encode(expressions) {
    const operands = expressions.map(({ terms }) => terms.map((t) => String(t)));
    const steps = Math.max(0, ...operands.map(([a, b]) => Math.max(a.length, b.length))) + 1;
    const data = new Float32Array(expressions.length * steps * FEATURES);
    operands.forEach(([a, b], row) => {
      for (let step = 0; step < steps; step++) {
        const x = step < a.length ? a.charCodeAt(a.length - 1 - step) - 48 : 0;
        const y = step < b.length ? b.charCodeAt(b.length - 1 - step) - 48 : 0;
        const base = (row * steps + step) * FEATURES;
        data[base + x] = 1;
        data[base + 10 + y] = 1;
      }
    });
    return { data, dims: [expressions.length, steps, FEATURES], type: "float32" };
  }

  // Probabilities [rows, steps, vocab] -> the number each row writes (a BigInt past 2**53), or null.
  decode(probabilities, rows, dims) {
    const steps = dims[1];
    const vocab = this.alphabet.length;
    const values = new Array(rows);
    for (let row = 0; row < rows; row++) {
      let text = "";
      let written = true;
      for (let step = steps - 1; step >= 0; step--) {
        const base = (row * steps + step) * vocab;
        let best = 0;
        for (let k = 1; k < vocab; k++) if (probabilities[base + k] > probabilities[base + best]) best = k;
        if (best > 9) written = false;
        text += String(best);
      }
      if (!written) {
        values[row] = null;
        continue;
      }
      const value = BigInt(text);
      values[row] = value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
    }
    return values;
  }

  noAnswer(query) {
    return new QueryError(`the model wrote no valid number for ${pyRepr(query)}`);
  }
}
