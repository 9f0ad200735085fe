// What a valid query is: a port of runtime/grammar.py, message for message.
//
// The browser parity test (tests/test_web.py) holds this file to the Python runtime:
// the same queries accepted, the same answers, the same error text for the rest.
// Positions count code points from 1, as Python's str does.

import { NON_ASCII_DIGITS } from "./digits.js";
import { NOT_PRINTABLE } from "./printable.js";

export const MAX_QUERY_CHARS = 256;
const QUERY_SLACK = 64; // characters beyond a model's longest bare query: spaces, leading zeros
const LONG_DIGITS = 18; // above this many digits, ranges are named by their digit count
const DIGITS = "0123456789";

export class QueryError extends Error {
  constructor(message) {
    super(message);
    this.name = "QueryError";
  }
}

const isAsciiDigit = (ch) => ch.length === 1 && ch >= "0" && ch <= "9";

function inRanges(cp, flat) {
  // flat: [first0, last0, first1, last1, ...] sorted; binary search over pairs
  let lo = 0;
  let hi = flat.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < flat[2 * mid]) hi = mid - 1;
    else if (cp > flat[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

const DIGIT_RANGES = NON_ASCII_DIGITS.flat();

function isUnicodeDigit(ch) {
  const cp = ch.codePointAt(0);
  return cp < 0x80 ? isAsciiDigit(ch) : inRanges(cp, DIGIT_RANGES);
}

function isPrintable(cp) {
  if (cp < 0x20 || cp === 0x7f) return false;
  if (cp < 0xa0) return cp < 0x7f;
  return !inRanges(cp, NOT_PRINTABLE);
}

// Python's repr() of a string: its choice of quotes and its escapes.
export function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let body = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    if (ch === "\\" || ch === quote) body += "\\" + ch;
    else if (ch === "\n") body += "\\n";
    else if (ch === "\r") body += "\\r";
    else if (ch === "\t") body += "\\t";
    else if (isPrintable(cp)) body += ch;
    else if (cp <= 0xff) body += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp <= 0xffff) body += "\\u" + cp.toString(16).padStart(4, "0");
    else body += "\\U" + cp.toString(16).padStart(8, "0");
  }
  return quote + body + quote;
}

export function example(config) {
  return [3, 10, 7, 1].slice(0, config.min_terms).map(String).join(config.operators[0]);
}

// Tokens [text, position] with spaces dropped; refuses any symbol outside the grammar.
function scan(chars, config) {
  const tokens = [];
  let i = 0;
  while (i < chars.length) {
    const pos = i + 1;
    let token;
    if (isAsciiDigit(chars[i])) {
      let j = i;
      while (j < chars.length && isAsciiDigit(chars[j])) j++;
      token = chars.slice(i, j).join("");
      i = j;
    } else if (chars[i] === " " || chars[i] === "\t") {
      while (i < chars.length && (chars[i] === " " || chars[i] === "\t")) i++;
      continue;
    } else {
      token = chars[i];
      i++;
    }
    if (isAsciiDigit(token[0]) || config.operators.includes(token)) {
      tokens.push([token, pos]);
    } else if (token === "(" || token === ")") {
      if (!config.brackets) {
        throw new QueryError(`this model was not trained on brackets; got '${token}' at position ${pos}`);
      }
      tokens.push([token, pos]);
    } else if ("+-*/×÷^%".includes(token)) {
      const ops = [...config.operators].join(" ");
      throw new QueryError(`this model supports only ${ops}; got '${token}' at position ${pos}`);
    } else if (isUnicodeDigit(token)) {
      throw new QueryError(`unsupported digit '${token}' at position ${pos}; use ASCII digits 0-9`);
    } else if ("._eE,".includes(token)) {
      throw new QueryError(`unexpected '${token}' at position ${pos}; operands are whole numbers written 0-9`);
    } else {
      throw new QueryError(
        `unexpected character ${pyRepr(token)} at position ${pos}; expected a query like ${example(config)}`,
      );
    }
  }
  if (tokens.length === 0) {
    throw new QueryError(`empty query; expected something like ${example(config)}`);
  }
  return tokens;
}

// Recursive descent over scanned tokens; every refusal names the position.
function parseTokens(tokens, config) {
  const terms = [];
  const operators = [];
  const brackets = [];
  let position = 0;
  const peek = () => (position < tokens.length ? tokens[position] : [null, null]);

  function operand() {
    const [token, pos] = peek();
    if (token === null) {
      throw new QueryError(
        `query ends with an operator; expected a number after it (like ${example(config)})`,
      );
    }
    position += 1;
    if (isAsciiDigit(token[0])) {
      terms.push(termValue(token));
      return;
    }
    if (token === "(") {
      const first = terms.length;
      sequence(1);
      const [closing] = peek();
      if (closing !== ")") throw new QueryError(`bracket opened at position ${pos} is never closed`);
      position += 1;
      const span = [first, terms.length - 1];
      if (span[0] === span[1]) {
        throw new QueryError(`brackets at position ${pos} enclose a single number; they must enclose an operation`);
      }
      if (brackets.some(([a, b]) => a === span[0] && b === span[1])) {
        throw new QueryError(`redundant brackets at position ${pos}`);
      }
      brackets.push(span);
      return;
    }
    const what = terms.length === 0 ? "a sign" : "a repeated operator";
    if (token === ")") throw new QueryError(`expected a number at position ${pos}, got ')'`);
    throw new QueryError(`expected a number at position ${pos}, got '${token}' (${what} is not accepted)`);
  }

  function sequence(depth) {
    operand();
    for (;;) {
      const [token, pos] = peek();
      if (token === null || (token === ")" && depth)) return;
      if (config.operators.includes(token)) {
        operators.push(token);
        position += 1;
        operand();
      } else if (token === ")") {
        throw new QueryError(`unmatched ')' at position ${pos}`);
      } else {
        throw new QueryError(`missing operator before '${token}' at position ${pos}`);
      }
    }
  }

  sequence(0);
  brackets.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  return { terms, operators, brackets };
}

// The operand digits a model takes: a pairs model's from its steps (its max_operand, a thousand
// nines, is text in the page's config), any other's from max_operand.
export function operandWidth(config) {
  return config.layout === "pairs" ? config.input_length - 1 : String(config.max_operand).length;
}

// Longest query text accepted: ModelConfig.max_query_chars.
export function maxQueryChars(config) {
  return Math.max(MAX_QUERY_CHARS, config.max_terms * (operandWidth(config) + 1) - 1 + QUERY_SLACK);
}

function checkDomain(expression, config) {
  const n = expression.terms.length;
  if (n < config.min_terms || n > config.max_terms) {
    const allowed =
      config.min_terms === config.max_terms ? `${config.min_terms}` : `${config.min_terms} to ${config.max_terms}`;
    throw new QueryError(`this model adds ${allowed} terms; got ${n}`);
  }
  const width = operandWidth(config);
  for (const term of expression.terms) {
    if (width > LONG_DIGITS) {  // a range of a thousand nines is named by its digit count
      const digits = String(term).length;
      if (digits > width) {
        throw new QueryError(
          `operand of ${digits.toLocaleString("en-US")} digits is outside this model's range of up to `
            + `${width.toLocaleString("en-US")} digits`,
        );
      }
      continue;
    }
    if (term < config.min_operand || term > config.max_operand) {
      throw new QueryError(
        `operand ${term} is outside this model's range ${config.min_operand}..${config.max_operand}`,
      );
    }
  }
}

// Python's int() of a digit run: a BigInt past 2**53, so an error message never shows a rounded operand.
function termValue(token) {
  const value = Number.parseInt(token, 10);
  if (Number.isSafeInteger(value)) return value;
  return BigInt(token);
}

export class Grammar {
  constructor(config) {
    this.config = config;
    this.maxChars = maxQueryChars(config);
    const ops = [...config.operators].map((op) => "\\" + op).join("");
    this.valid = new RegExp(`^[ \\t]*[0-9]+(?:[ \\t]*[${ops}][ \\t]*[0-9]+)*[ \\t]*$`);
    this.tokens = new RegExp(`[0-9]+|[${ops}]`, "g");
  }

  // Parse one query or throw QueryError saying what is wrong and where.
  parse(query) {
    if (typeof query !== "string") throw new QueryError(`a query must be text, got ${typeof query}`);
    const chars = Array.from(query);
    if (chars.length > this.maxChars) {
      throw new QueryError(`query is ${chars.length} characters long; at most ${this.maxChars} are accepted`);
    }
    let expression;
    if (this.valid.test(query)) {
      const tokens = query.match(this.tokens);
      expression = {
        terms: tokens.filter((_, i) => i % 2 === 0).map(termValue),
        operators: tokens.filter((_, i) => i % 2 === 1),
        brackets: [],
      };
    } else {
      expression = parseTokens(scan(chars, this.config), this.config);
    }
    checkDomain(expression, this.config);
    return expression;
  }
}

export { DIGITS };
