// The diffuse web page: fills its pickers from the A1111 API, submits to
// the native jobs API and follows the job's server-sent events.
"use strict";
const $ = (id) => document.getElementById(id);
let current = null; // the running job's EventSource and id

function key() { return $("apikey").value.trim(); }

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (key()) headers["Authorization"] = "Bearer " + key();
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = data.error || {};
    throw new Error(e.message || data.detail || resp.statusText);
  }
  return data;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function fill(select, items, value, label) {
  for (const it of items) {
    const o = document.createElement("option");
    o.value = value(it);
    o.textContent = label(it);
    select.appendChild(o);
  }
}

async function load() {
  $("apikey").value = localStorage.getItem("diffuse-key") || "";
  try {
    const [models, samplers, loras, cn, opts] = await Promise.all([
      api("GET", "/sdapi/v1/sd-models"), api("GET", "/sdapi/v1/samplers"), api("GET", "/sdapi/v1/loras"),
      api("GET", "/controlnet/model_list"), api("GET", "/sdapi/v1/options")]);
    fill($("model"), models, (m) => m.model_name, (m) => m.title);
    $("model").value = (models.find((m) => m.title === opts.sd_model_checkpoint) || models[0] || {}).model_name || "";
    fill($("sampler"), samplers, (s) => s.name, (s) => s.name);
    $("sampler").value = "Euler a";
    fill($("cnmodel"), cn.model_list, (m) => m, (m) => m);
    for (const l of loras) {
      const chip = document.createElement("span");
      chip.textContent = l.name;
      chip.onclick = () => { $("prompt").value += ` <lora:${l.name}:1>`; };
      $("loras").appendChild(chip);
    }
    status("ready");
  } catch (e) {
    status("cannot reach the API: " + e.message, true);
  }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

async function generate(ev) {
  ev.preventDefault();
  localStorage.setItem("diffuse-key", key());
  const num = (id) => Number($(id).value);
  const req = {
    prompt: $("prompt").value, negative_prompt: $("negative").value, model: $("model").value,
    sampler: $("sampler").value, steps: num("steps"), cfg_scale: num("cfg"), seed: num("seed"),
    width: num("width"), height: num("height"), count: num("count"),
  };
  if ($("cnmodel").value) {
    const f = $("cnimage").files[0];
    if (!f) { status("the ControlNet needs a condition image", true); return; }
    req.controlnets = [{ model: $("cnmodel").value, image: await readFile(f), weight: num("cnweight"), canny: $("cncanny").checked }];
  }
  let job;
  try {
    job = await api("POST", "/api/v1/jobs", req);
  } catch (e) {
    status(e.message, true);
    return;
  }
  follow(job.id);
}

function follow(id) {
  $("generate").disabled = true;
  $("cancel").disabled = false;
  $("progress").value = 0;
  status("queued");
  let url = `/api/v1/jobs/${id}/events?cancel_on_disconnect=1`;
  if (key()) url += "&api_key=" + encodeURIComponent(key());
  const es = new EventSource(url);
  current = { es, id };
  es.addEventListener("progress", (m) => {
    const p = JSON.parse(m.data);
    $("progress").value = p.progress;
    $("progresstext").textContent = `image ${p.image + 1}/${p.images}, step ${p.step}/${p.steps}, ${p.eta_seconds.toFixed(1)} s left`;
    if (p.preview) { $("preview").src = p.preview; $("preview").hidden = false; }
    status("generating");
  });
  const end = (m) => {
    es.close();
    current = null;
    $("generate").disabled = false;
    $("cancel").disabled = true;
    const st = JSON.parse(m.data);
    $("progress").value = st.status === "done" ? 1 : 0;
    if (st.error) status(st.error.message, true); else status(st.status);
    for (const r of st.result || []) addToGallery(r);
  };
  for (const e of ["done", "failed", "cancelled"]) es.addEventListener(e, end);
  es.onerror = () => { if (es.readyState === EventSource.CLOSED) status("connection lost", true); };
}

function addToGallery(r) {
  const div = document.createElement("div");
  div.className = "item";
  const img = document.createElement("img");
  img.src = r.url + (key() ? "?api_key=" + encodeURIComponent(key()) : "");
  img.alt = "seed " + r.seed;
  const pre = document.createElement("pre");
  pre.className = "params";
  pre.textContent = r.parameters;
  div.append(img, pre);
  $("gallery").prepend(div);
}

async function cancel() {
  if (current) await api("DELETE", `/api/v1/jobs/${current.id}`).catch((e) => status(e.message, true));
}

// Dropping a PNG shows its A1111 parameters and fills the form from them.
async function dropped(ev) {
  ev.preventDefault();
  $("dropzone").classList.remove("over");
  const f = ev.dataTransfer.files[0];
  if (!f) return;
  try {
    const info = await api("POST", "/sdapi/v1/png-info", { image: await readFile(f) });
    $("pnginfo").textContent = info.info || "(no parameters in this image)";
    const p = info.parameters || {};
    if (p.Prompt !== undefined) $("prompt").value = p.Prompt;
    if (p["Negative prompt"] !== undefined) $("negative").value = p["Negative prompt"];
    if (p.Steps) $("steps").value = p.Steps;
    if (p.Seed) $("seed").value = p.Seed;
    if (p["CFG scale"]) $("cfg").value = p["CFG scale"];
    if (p["Size-1"]) { $("width").value = p["Size-1"]; $("height").value = p["Size-2"]; }
  } catch (e) {
    status(e.message, true);
  }
}

$("form").addEventListener("submit", generate);
$("cancel").addEventListener("click", cancel);
$("dropzone").addEventListener("dragover", (e) => { e.preventDefault(); $("dropzone").classList.add("over"); });
$("dropzone").addEventListener("dragleave", () => $("dropzone").classList.remove("over"));
$("dropzone").addEventListener("drop", dropped);
load();
