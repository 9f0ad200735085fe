// How a query becomes a tensor and the model's output a number: a port of runtime/codec.py.
//
// The config is the model's own (written from the .onnx metadata at build time); the
// derived sizes below are config.py's formulas, checked against the stored
// input_length and output_length when a model loads.

import { Grammar, QueryError, pyRepr } from "./grammar.js";

const PAD = " ";

export class Codec {
  constructor(config) {
    this.config = config;
    this.grammar = new Grammar(config);
    this.alphabet = "0123456789" + config.operators + (config.brackets ? "()" : "") + PAD;
    this.operandWidth = String(config.max_operand).length;
    const n = config.max_terms;
    const m = config.max_operand;
    this.bracketSlots = Array.from({ length: n }, (_, i) => (config.brackets ? [n - 1 - i, i] : [0, 0]));
    const slots = this.bracketSlots.reduce((sum, [o, c]) => sum + o + c, 0);
    this.inputLength = n * this.operandWidth + (n - 1) + slots;
    const star = config.operators.includes("*");
    const largest = star ? Math.max(m ** n, n * m) : n * m;
    this.smallest = config.operators.includes("-") ? -(star ? Math.max(m ** (n - 1), m) : (n - 1) * m) : 0;
    this.outputLength = String(largest - this.smallest).length;
    if (config.alphabet !== this.alphabet || config.input_length !== this.inputLength
        || config.output_length !== this.outputLength) {
      throw new Error("model config is inconsistent with this page's codec (alphabet or lengths differ)");
    }
    this.symbolIndex = new Map([...this.alphabet].map((s, i) => [s, i]));
  }

  parse(query) {
    return this.grammar.parse(query);
  }

  // The exact string the model reads for an expression, one symbol per time step.
  canonicalText(expression) {
    const pad = (t) => String(t).padStart(this.operandWidth, "0");
    let text;
    if (this.config.brackets) {
      text = this.bracketedText(expression, pad);
    } else {
      text = pad(expression.terms[0]);
      expression.operators.forEach((op, i) => {
        text += op + pad(expression.terms[i + 1]);
      });
    }
    text = text.padEnd(this.inputLength, PAD);
    return this.config.reverse_input ? [...text].reverse().join("") : text;
  }

  // Operands first, then the structure (operators and bracket columns) in fixed slots.
  bracketedText(expression, pad) {
    const { terms, operators, brackets } = expression;
    const digits = terms.map(pad).join("").padEnd(this.config.max_terms * this.operandWidth, PAD);
    let structure = "";
    this.bracketSlots.forEach(([openSlots, closeSlots], i) => {
      const opSlot = i ? 1 : 0;
      if (i >= terms.length) {
        structure += PAD.repeat(opSlot + openSlots + closeSlots);
        return;
      }
      const opens = brackets.filter(([first]) => first === i).length;
      const closes = brackets.filter(([, last]) => last === i).length;
      structure += (i ? operators[i - 1] : "") + PAD.repeat(openSlots - opens) + "(".repeat(opens)
        + ")".repeat(closes) + PAD.repeat(closeSlots - closes);
    });
    return digits + structure;
  }

  // Writes expressions into one model input: float32 one-hot, int32 indices, or one float32
  // per step (ordinal: the symbol's index scaled to 0..1, digits first).
  encode(expressions) {
    const length = this.inputLength;
    const vocab = this.alphabet.length;
    const encoding = this.config.encoding;
    const onehot = encoding !== "index" && encoding !== "ordinal";
    const data = encoding === "index" ? new Int32Array(expressions.length * length)
      : new Float32Array(expressions.length * length * (onehot ? vocab : 1));
    const scale = Math.fround(vocab - 1);
    expressions.forEach((expression, row) => {
      const text = this.canonicalText(expression);
      for (let step = 0; step < length; step++) {
        const index = this.symbolIndex.get(text[step]);
        if (onehot) data[(row * length + step) * vocab + index] = 1;
        else if (encoding === "ordinal") data[row * length + step] = Math.fround(index / scale);
        else data[row * length + step] = index;
      }
    });
    if (encoding === "index") return { data, dims: [expressions.length, length], type: "int32" };
    return { data, dims: [expressions.length, length, onehot ? vocab : 1], type: "float32" };
  }

  // Probabilities [rows, output_length, vocab] -> the number each row writes, or null.
  decode(probabilities, rows) {
    const steps = this.outputLength;
    const vocab = this.alphabet.length;
    const values = new Array(rows);
    for (let row = 0; row < rows; row++) {
      const digits = [];
      for (let step = 0; step < steps; step++) {
        const base = (row * steps + step) * vocab;
        let best = 0;
        for (let k = 1; k < vocab; k++) if (probabilities[base + k] > probabilities[base + best]) best = k;
        digits.push(best);
      }
      if (this.config.reverse_output) digits.reverse();
      if (digits.some((d) => d > 9)) {
        values[row] = null;
        continue;
      }
      values[row] = digits.reduce((v, d) => v * 10 + d, 0) + this.smallest;
    }
    return values;
  }

  noAnswer(query) {
    return new QueryError(`the model wrote no valid number for ${pyRepr(query)}`);
  }
}
