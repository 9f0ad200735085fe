// The page: a query box (Enter answers), a model switch, the answer or the error, the time taken.
import { Adder, QueryError } from "./adder.js";

const $ = (id) => document.getElementById(id);
const loaded = new Map();

async function model(name) {
  if (!loaded.has(name)) loaded.set(name, Adder.load(name));
  return loaded.get(name);
}

function selected() {
  return document.querySelector("input[name=model]:checked").value;
}

function describe(config) {
  const terms = config.min_terms === config.max_terms ? `${config.min_terms}` : `${config.min_terms} to ${config.max_terms}`;
  const brackets = config.brackets ? ", round brackets" : "";
  if (config.layout === "pairs") {
    return `${terms} terms of up to ${(config.input_length - 1).toLocaleString("en-US")} digits, operators ${config.operators}`;
  }
  return `${terms} terms in ${config.min_operand}..${config.max_operand}, operators ${config.operators}${brackets}`;
}

async function show() {
  const adder = await model(selected());
  $("domain").textContent = `${adder.name}: ${describe(adder.config)}`;
  $("status").textContent = "ready: onnxruntime-web (wasm), nothing leaves this page";
}

async function answer() {
  const query = $("query").value;
  $("answer").textContent = "";
  $("error").textContent = "";
  $("meta").textContent = "";
  const adder = await model(selected());
  const started = performance.now();
  try {
    const value = await adder.answer(query);
    $("answer").textContent = String(value);
    $("meta").textContent = `${(performance.now() - started).toFixed(1)} ms`;
  } catch (error) {
    if (!(error instanceof QueryError)) throw error;
    $("error").textContent = `error: ${error.message}`;
  }
}

$("query").addEventListener("keydown", (event) => {
  if (event.key === "Enter") answer();
});
for (const radio of document.querySelectorAll("input[name=model]")) radio.addEventListener("change", show);
window.adderPage = { model, ready: show() };
