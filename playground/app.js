// @ts-check
/// <reference lib="dom" />
/**
 * The playground page: a multi-turn chat with the served model through the public API. Model
 * output is only ever inserted as text (`Text` nodes, `textContent`), never parsed as HTML. The API
 * key, when the server needs one, lives in this tab's `sessionStorage` only.
 *
 * @module
 */
import { ApiError, ConnectionError, countTokens, getModel, streamChat } from "./api.js";
import { AnswerTimer, formatStats } from "./stats.js";

const KEY_STORE = "bn-playground-api-key";
/** The page's folder: the API is beside it, also behind a proxy that serves it under a prefix. */
const base = new URL(".", document.baseURI);

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
function byId(id, type) {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`The page lacks #${id}`);
  return el;
}

const ui = {
  model: byId("model", HTMLElement),
  reset: byId("reset", HTMLButtonElement),
  settings: byId("settings", HTMLDetailsElement),
  system: byId("system", HTMLTextAreaElement),
  temperature: byId("temperature", HTMLInputElement),
  topP: byId("top-p", HTMLInputElement),
  maxTokens: byId("max-tokens", HTMLInputElement),
  seed: byId("seed", HTMLInputElement),
  key: byId("api-key", HTMLInputElement),
  keyForm: byId("key-form", HTMLFormElement),
  messages: byId("messages", HTMLElement),
  empty: byId("empty", HTMLElement),
  composer: byId("composer", HTMLFormElement),
  prompt: byId("prompt", HTMLTextAreaElement),
  count: byId("count", HTMLElement),
  stop: byId("stop", HTMLButtonElement),
  send: byId("send", HTMLButtonElement),
};

/** @type {{ role: "user" | "assistant", content: string }[]} */
let history = [];
/** @type {import("./api.js").ModelCard | null} */
let model = null;
/** The running answer's controller (Stop aborts it). */
/** @type {AbortController | null} */
let running = null;
/** Context positions the conversation filled at its last answer (from the usage chunk). */
let contextUsed = 0;

const apiKey = () => sessionStorage.getItem(KEY_STORE) ?? "";

// ---------------------------------------------------------------- model

/** @type {ReturnType<typeof setTimeout> | undefined} */
let modelRetry;

/** Shows the served model; retries while the server loads, asks for a key on 401. */
async function loadModel() {
  clearTimeout(modelRetry);
  try {
    model = await getModel(base, apiKey());
    const parts = [model.id];
    if (model.nCtx !== null) parts.push(`ctx ${model.nCtx}`);
    const threads = model.threads ? ` × ${model.threads} thread${model.threads === 1 ? "" : "s"}` : "";
    if (model.kernel) parts.push(`kernel ${model.kernel}${threads}`);
    ui.model.textContent = parts.join(" · ");
    ui.model.classList.remove("problem");
    ui.maxTokens.max = model.nCtx ? String(model.nCtx) : "";
  } catch (e) {
    model = null;
    ui.model.classList.add("problem");
    if (e instanceof ApiError && e.status === 401) {
      ui.model.textContent = "This server needs an API key: enter it in Settings.";
      ui.settings.open = true;
      ui.key.focus();
      return;
    }
    const wait = e instanceof ApiError && e.retryAfter ? e.retryAfter : 3;
    ui.model.textContent = `${describe(e)} Retrying in ${wait} s.`;
    modelRetry = setTimeout(loadModel, wait * 1000);
  }
}

// ---------------------------------------------------------------- messages

/** Whether the log is scrolled to (near) its end, so new text should keep it there. */
const atEnd = () => ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 48;

/**
 * Appends `el` to the log, following it when the reader was at the end.
 * @param {HTMLElement} el
 */
function append(el) {
  const follow = atEnd();
  ui.empty.hidden = true;
  ui.messages.append(el);
  if (follow) ui.messages.scrollTop = ui.messages.scrollHeight;
}

/**
 * @param {string} tag
 * @param {string} className
 * @param {string} [text]
 */
function element(tag, className, text) {
  const el = document.createElement(tag);
  el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** @param {string} content */
function addUser(content) {
  const el = element("article", "msg user");
  el.append(element("div", "role", "You"), element("div", "text", content));
  append(el);
  return el;
}

/**
 * An empty assistant message whose text grows as a single `Text` node. `show` queues text and
 * draws it once per animation frame, so a fast stream costs one layout per frame, not one per
 * token; `flush` draws what is queued now.
 */
function addAnswer() {
  const el = element("article", "msg assistant streaming");
  const body = element("div", "text");
  const text = document.createTextNode("");
  body.append(text);
  const stats = element("div", "stats", "waiting for the first token…");
  stats.dataset.testid = "stats";
  el.append(element("div", "role", model?.id ?? "Assistant"), body, stats);
  append(el);
  let queued = "";
  let frame = 0;
  const flush = () => {
    cancelAnimationFrame(frame);
    frame = 0;
    if (!queued) return;
    const follow = atEnd();
    text.appendData(queued);
    queued = "";
    if (follow) ui.messages.scrollTop = ui.messages.scrollHeight;
  };
  /** @param {string} delta */
  const show = (delta) => {
    queued += delta;
    frame ||= requestAnimationFrame(flush);
  };
  return { el, stats, show, flush };
}

/** @param {string} message */
function addError(message) {
  const el = element("div", "msg error", message);
  el.setAttribute("role", "alert");
  append(el);
}

/**
 * A sentence for the person at the page: what went wrong and what to do.
 * @param {unknown} e
 */
function describe(e) {
  if (e instanceof ApiError) {
    const field = e.param && !e.message.includes(e.param) ? ` (field: ${e.param})` : "";
    const retry = e.retryAfter !== null ? ` Retry after ${e.retryAfter} s.` : "";
    if (e.status === 0) return `The server stopped the answer: ${e.message}`;
    if (e.status === 401) return "The server needs an API key (401): enter it in Settings.";
    if (e.status === 429) return `The server is busy (429): ${e.message}.${retry}`;
    if (e.status === 503) return `The server is not ready (503): ${e.message}.${retry}`;
    if (e.status === 400) return `The server refused the request (400): ${e.message}${field}`;
    return `The server answered ${e.status}: ${e.message}${field}${retry}`;
  }
  if (e instanceof ConnectionError) return `Connection lost: ${e.message}.`;
  return `Something went wrong: ${e instanceof Error ? e.message : String(e)}`;
}

// ---------------------------------------------------------------- sending

/**
 * The number typed, or undefined when empty (the server's default). Out-of-range values are sent
 * as they are: the server's 400 names the field.
 * @param {HTMLInputElement} input
 */
const numberOf = (input) => input.value.trim() === "" ? undefined : Number(input.value);

function requestBody() {
  const system = ui.system.value.trim();
  return {
    model: model?.id ?? "default",
    messages: [...(system ? [{ role: "system", content: system }] : []), ...history],
    temperature: numberOf(ui.temperature),
    top_p: numberOf(ui.topP),
    max_tokens: numberOf(ui.maxTokens),
    seed: numberOf(ui.seed),
    stream_options: { include_usage: true },
  };
}

/** @param {boolean} busy */
function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  document.body.classList.toggle("busy", busy);
}

/** Sends the prompt as the next user turn and streams the answer into the log. */
async function send() {
  const content = ui.prompt.value;
  if (running || !content.trim()) return;
  ui.prompt.value = "";
  const conversation = history; // New chat while this runs replaces it
  history.push({ role: "user", content });
  const userEl = addUser(content);
  const answer = addAnswer();
  const controller = new AbortController();
  running = controller;
  setBusy(true);
  const timer = new AnswerTimer(performance.now());
  let text = "";
  /** @type {unknown} */
  let error = null;
  try {
    const chunks = streamChat(base, requestBody(), { key: apiKey(), signal: controller.signal });
    for await (const chunk of chunks) {
      if (chunk.usage) timer.usage = chunk.usage;
      if (chunk.timings) timer.timings = chunk.timings;
      const choice = chunk.choices?.[0];
      const delta = choice?.delta?.content;
      if (delta) {
        timer.delta(performance.now());
        text += delta;
        answer.show(delta);
      }
      if (choice?.finish_reason) timer.finished(choice.finish_reason, performance.now());
    }
  } catch (e) {
    if (controller.signal.aborted) timer.finished("stopped", performance.now());
    else error = e;
  } finally {
    running = null;
    setBusy(false);
  }
  if (history !== conversation) return; // New chat: this turn is gone with its conversation
  answer.flush();
  answer.el.classList.remove("streaming");
  if (text === "" && (error || timer.finish === "stopped")) {
    // Nothing came back: take the turn back, and give the text back to send again.
    history.pop();
    userEl.remove();
    answer.el.remove();
    if (!ui.prompt.value) ui.prompt.value = content;
    const full = error instanceof ApiError && error.code === "context_length_exceeded" && history.length > 0;
    const hint = full ? " The conversation fills the context: New chat starts over." : "";
    if (error) addError(`${describe(error)}${hint} Your message is back in the box.`);
    if (error instanceof ApiError && error.status === 401) {
      ui.settings.open = true;
      ui.key.focus();
      return;
    }
  } else {
    history.push({ role: "assistant", content: text });
    answer.stats.textContent = formatStats(timer.stats());
    if (timer.usage) contextUsed = timer.usage.prompt_tokens + timer.usage.completion_tokens;
    if (error) addError(`${describe(error)} The answer above is incomplete.`);
  }
  updateCount();
  ui.prompt.focus();
}

/** Stops the running answer, if any. */
function stop() {
  running?.abort(new DOMException("Stopped by the user", "AbortError"));
}

/** Forgets the conversation. */
function reset() {
  stop();
  history = [];
  contextUsed = 0;
  for (const el of [...ui.messages.children]) if (el !== ui.empty) el.remove();
  ui.empty.hidden = false;
  updateCount();
  ui.prompt.focus();
}

// ---------------------------------------------------------------- token count

/** @type {ReturnType<typeof setTimeout> | undefined} */
let countTimer;
/** @type {AbortController | null} */
let countAbort = null;

/** Shows the draft's size in tokens (from /tokenize, debounced) and the context used so far. */
function updateCount() {
  clearTimeout(countTimer);
  countAbort?.abort();
  const used = contextUsed && model?.nCtx ? `context ${contextUsed}/${model.nCtx} used` : "";
  const draft = ui.prompt.value;
  if (!draft.trim() || !model) {
    ui.count.textContent = used;
    return;
  }
  countTimer = setTimeout(async () => {
    const ac = countAbort = new AbortController();
    try {
      const n = await countTokens(base, draft, { key: apiKey(), signal: ac.signal });
      ui.count.textContent = [`${n} token${n === 1 ? "" : "s"}`, used].filter(Boolean).join(" · ");
    } catch {
      // Only a hint: a real problem shows when the message is sent.
    }
  }, 250);
}

// ---------------------------------------------------------------- wiring

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey) {
    e.preventDefault();
    send();
  }
});
ui.prompt.addEventListener("input", updateCount);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && running) stop();
});
ui.stop.addEventListener("click", stop);
ui.reset.addEventListener("click", reset);
ui.key.value = apiKey();
/** Keeps the typed key for this tab and asks the server again. */
function saveKey() {
  const key = ui.key.value.trim();
  if (key === apiKey()) return;
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
  loadModel();
}
ui.key.addEventListener("change", saveKey);
ui.keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  saveKey();
  if (model) ui.prompt.focus();
});
if (matchMedia("(min-width: 50rem)").matches) ui.settings.open = true;
setBusy(false);
ui.prompt.focus();
loadModel();
