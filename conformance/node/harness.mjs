// Node.js harness of the conformance runner: runs ONNX models on onnxruntime-node,
// onnxruntime-web's wasm backend under Node.js, or onnxruntime-web in a real headless Chromium
// (WebAssembly, WebGPU, or the default bundle's JSEP WebGPU; browser.mjs), with inputs read
// from ONNX test vectors on disk.
//
//   node harness.mjs serve [--backend B]   JSON lines on stdin → JSON lines on stdout
//       {"cmd":"hello"}                          → {"ok":true,"version":"1.30.0","backend":B,"provider":P}
//                                                 | {"ok":false,"unavailable":true,"error":WHY}
//       {"cmd":"load","model":PATH,"external":[F]} → {"ok":true} | {"ok":false,"error":MSG}
//         (F: the model's external-data files, relative to its folder: onnxruntime-web reads
//         no files itself, so they are handed to it as bytes)
//       {"cmd":"run","model":PATH,"dataset":DIR} → {"ok":true,"outputs":[{name,dims,dtype,data}],"seconds":S}
//     DIR holds input_<k>.pb (TensorProto); output data is base64 of little-endian values.
//     The process ends when stdin closes.
//   node harness.mjs replay DIR [--backend B]
//     Replays every <model>/test_data_set_<k> under DIR (the runner's `vectors` layout) and
//     judges the outputs by the rules of conformance/compare.py (below); exit 1 on any fail
//     or error. It is strict: known divergences are not applied here (they match features
//     read from the graph, which needs onnx's Python reader); for divergence-aware verdicts
//     on the same files run `python -m conformance replay DIR --runtimes ort-node,ort-web`.
//   B: node (default) | web | chromium-wasm | chromium-webgpu | chromium-jsep
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { decodeTensor } from './tensor.mjs';

// backend → the runtime name it is judged as (tolerances.toml) and how to open its engine
const BACKENDS = {
  node: { runtime: 'ort-node', open: () => inProcess('onnxruntime-node') },
  web: { runtime: 'ort-web', open: () => inProcess('onnxruntime-web') },
  'chromium-wasm': { runtime: 'ort-web-chromium',
    open: () => browser({ bundle: 'ort.wasm.min.mjs', webgpu: false,
      sessionOptions: { executionProviders: ['wasm'] } }) },
  // onnxruntime-web's native WebGPU execution provider (the `onnxruntime-web/webgpu` bundle);
  // a node it cannot place on WebGPU refuses the session instead of running on WebAssembly
  'chromium-webgpu': { runtime: 'ort-webgpu-chromium',
    open: () => browser({ bundle: 'ort.webgpu.min.mjs', webgpu: true,
      sessionOptions: { executionProviders: ['webgpu'], extra: { session: { disable_cpu_ep_fallback: '1' } } } }) },
  // the default `onnxruntime-web` bundle's WebGPU (JSEP), as a page that asks for 'webgpu' gets it
  'chromium-jsep': { runtime: 'ort-webgpu-jsep-chromium',
    open: () => browser({ bundle: 'ort.min.mjs', webgpu: true,
      sessionOptions: { executionProviders: ['webgpu'] } }) },
};

const args = process.argv.slice(2);
const backendName = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'node';
if (!Object.hasOwn(BACKENDS, backendName)) {
  console.error(`harness: unknown backend ${backendName}; known: ${Object.keys(BACKENDS).join(', ')}`);
  process.exit(2);
}
const BACKEND = BACKENDS[backendName];

async function inProcess(pkg) {
  let ort;
  try {
    // ort-node@VERSION: that release's folder in the runner's cache (CONFORMANCE_ORT_NODE_DIR)
    const pinned = pkg === 'onnxruntime-node' ? process.env.CONFORMANCE_ORT_NODE_DIR : null;
    if (pinned) {
      const found = createRequire(join(pinned, 'package.json')).resolve(pkg);
      const mod = await import(pathToFileURL(found).href);
      ort = mod.InferenceSession ? mod : mod.default;
    } else {
      ort = await import(pkg);
    }
  } catch (e) {
    throw new Unavailable(`${pkg} is not installed here: run \`cd conformance/node && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci\` (${String(e.message || e).split('\n')[0]})`);
  }
  ort.env.logLevel = 'fatal';
  const web = pkg === 'onnxruntime-web';
  if (web) ort.env.wasm.numThreads = 1;
  return {
    version: web ? ort.env.versions.web : ort.env.versions.node,
    provider: web ? 'wasm' : 'cpu',
    async create(model, external = []) {
      const options = { logSeverityLevel: 3 };
      if (web && external.length) {
        options.externalData = external.map((path) => ({ path, data: readFileSync(join(dirname(model), path)) }));
      }
      const sess = await ort.InferenceSession.create(model, options);
      return {
        inputNames: sess.inputNames,
        outputNames: sess.outputNames,
        async run(tensors) {
          const feeds = {};
          for (const t of tensors) feeds[t.name] = new ort.Tensor(t.dtype, t.data, t.dims);
          return sess.run(feeds);
        },
      };
    },
    async close() {},
  };
}

class Unavailable extends Error {}

async function browser(options) {
  const mod = await import('./browser.mjs');
  try {
    return await mod.openBrowser(options);
  } catch (e) {
    if (e instanceof mod.Unavailable) throw new Unavailable(e.message);
    throw e;
  }
}

let enginePromise = null;
function engine() {
  enginePromise ||= BACKEND.open();
  return enginePromise;
}

// What the backend needs is checked before anything else: one line and exit 2 when missing
// (the in-process runtimes are loaded now; a browser is launched on first use)
try {
  if (backendName === 'node' || backendName === 'web') await engine();
  else await import('playwright-core').catch(() => {
    throw new Unavailable(`playwright-core is not installed here: run \`cd conformance/node && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci\``);
  });
} catch (e) {
  console.error(`harness: ${String(e && e.message ? e.message : e).split('\n')[0]}`);
  process.exit(2);
}

const sessions = new Map();
async function session(model, external = []) {
  if (!sessions.has(model)) {
    sessions.clear(); // one model at a time, as the Python adapters do
    sessions.set(model, await (await engine()).create(model, external));
  }
  return sessions.get(model);
}

function readTensors(dir, prefix) {
  const files = readdirSync(dir).filter((f) => f.startsWith(`${prefix}_`) && f.endsWith('.pb'));
  files.sort((a, b) => parseInt(a.split('_')[1]) - parseInt(b.split('_')[1]));
  return files.map((f) => decodeTensor(readFileSync(join(dir, f))));
}

async function run(model, dataset) {
  const sess = await session(model);
  const tensors = readTensors(dataset, 'input');
  const start = performance.now();
  const results = await sess.run(tensors);
  const seconds = (performance.now() - start) / 1000;
  const outputs = sess.outputNames.map((name) => {
    const r = results[name];
    const bytes = Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength);
    return { name, dims: Array.from(r.dims), dtype: r.type, data: bytes.toString('base64') };
  });
  return { outputs, seconds };
}

async function shutdown(code) {
  // the runner closed our stdin (it is done, or its worker was killed after a timeout): leave
  // now, even while a request hangs, so no browser or session outlives the worker
  setTimeout(() => process.exit(code), 5000).unref();
  if (enginePromise) await (await enginePromise.catch(() => ({ close() {} }))).close().catch(() => {});
  process.exit(code);
}

async function serve() {
  process.stdin.on('end', () => shutdown(0));
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let reply;
    try {
      const msg = JSON.parse(line);
      if (msg.cmd === 'hello') reply = await hello();
      else if (msg.cmd === 'load') {
        const sess = await session(msg.model, Array.isArray(msg.external) ? msg.external : []);
        reply = { ok: true, placement: sess.placement || null };
      }
      else if (msg.cmd === 'run') reply = { ok: true, ...(await run(msg.model, msg.dataset)) };
      else reply = { ok: false, error: `unknown command ${msg.cmd}` };
    } catch (e) {
      reply = { ok: false, error: String(e && e.message ? e.message : e).split('\n')[0] };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
  if (enginePromise) await (await enginePromise.catch(() => ({ close() {} }))).close();
}

async function hello() {
  try {
    const e = await engine();
    return { ok: true, version: e.version, backend: backendName, provider: e.provider };
  } catch (e) {
    const why = String(e && e.message ? e.message : e).split('\n')[0];
    return e instanceof Unavailable ? { ok: false, unavailable: true, error: why } : { ok: false, error: why };
  }
}

// The verdict rules of conformance/compare.py, restated for Node.js:
// - every output the model declares needs a truth and every truth an output (tensors without
//   a name are matched by position, as onnx's backend runner does; duplicate names are refused);
// - dtype and dims must equal torch's; any NaN/±Inf in a result fails; a truth that is not
//   finite cannot be judged against (an error, never a pass); no truth at all is never a pass;
// - tolerances are conformance/tolerances.toml's (the one source of the numbers: the last rule
//   whose dtype, runtime and output globs match, as compare.py reads it); a case.json may only
//   tighten them, never loosen them.
const RUNTIME = BACKEND.runtime;

function globToRegExp(glob) {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function tomlRules() {
  // [[tolerance]] blocks of `key = "glob"` / `key = number` lines (comments and blank lines skipped)
  const text = readFileSync(new URL('../tolerances.toml', import.meta.url), 'utf8');
  return text.split(/^\[\[tolerance\]\]\s*$/m).slice(1).map((block) => {
    const rule = {};
    for (const line of block.split('\n')) {
      const m = line.replace(/#.*$/, '').match(/^\s*(\w+)\s*=\s*(?:"([^"]*)"|([-+0-9.eE]+))\s*$/);
      if (m) rule[m[1]] = m[2] !== undefined ? m[2] : Number(m[3]);
    }
    return rule;
  });
}
const RULES = tomlRules();

function defaultTolerance(output) {
  let found = null;
  for (const rule of RULES) {
    const fits = [['dtype', 'float32'], ['runtime', RUNTIME], ['output', output]]
      .every(([k, v]) => globToRegExp(rule[k] ?? '*').test(v));
    if (fits) found = { atol: rule.atol, rtol: rule.rtol };
  }
  if (!found) throw new Error(`no tolerance for float32/${RUNTIME}/${output} in tolerances.toml`);
  return found;
}

function tolerance(meta, name) {
  const all = meta.tolerance !== null && typeof meta.tolerance === 'object' ? meta.tolerance : {};
  const t = Object.hasOwn(all, name) && all[name] !== null && typeof all[name] === 'object' ? all[name] : {};
  const d = defaultTolerance(name);
  const pick = (v, dflt) => (typeof v === 'number' && v >= 0 ? Math.min(v, dflt) : dflt);
  return { atol: pick(t.atol, d.atol), rtol: pick(t.rtol, d.rtol) };
}

function named(tensors, names, what) {
  const out = new Map();
  tensors.forEach((t, k) => {
    const name = t.name || names[k];
    if (!name) throw new Error(`unnamed ${what} tensor at position ${k}, past the graph's ${what}s`);
    if (out.has(name)) throw new Error(`two ${what} tensors named ${name}`);
    out.set(name, t);
  });
  return out;
}

function judgeOne(name, got, want, tol) {
  if (!got) return { error: false, problem: `${name} missing from the runtime's outputs` };
  if (got.type !== want.dtype) return { error: false, problem: `${name} is ${got.type}, torch ${want.dtype}` };
  const gd = Array.from(got.dims, Number); const wd = Array.from(want.dims, Number);
  if (gd.length !== wd.length || gd.some((d, i) => d !== wd[i])) {
    return { error: false, problem: `${name} has shape [${gd}], torch [${wd}]` };
  }
  let bad = 0; let nonfinite = 0; let untrusted = 0;
  for (let i = 0; i < want.data.length; i++) {
    const w = Number(want.data[i]); const g = Number(got.data[i]);
    if (!Number.isFinite(w)) { untrusted++; continue; }
    if (!Number.isFinite(g)) { nonfinite++; continue; }
    if (!(Math.abs(g - w) <= tol.atol + tol.rtol * Math.abs(w))) bad++;
  }
  if (untrusted) return { error: true, problem: `torch's answer ${name} has ${untrusted} NaN/±Inf: nothing to judge against` };
  if (nonfinite) return { error: false, problem: `the runtime's ${name} has ${nonfinite} NaN/±Inf` };
  if (bad) return { error: false, problem: `${name}: ${bad}/${want.data.length} elements outside tolerance` };
  return null;
}

function judge(sess, results, wantList, meta) {
  const want = named(wantList, sess.outputNames, 'output');
  const problems = []; let error = false;
  if (want.size === 0) problems.push('no truth to compare against: nothing was checked');
  for (const name of sess.outputNames) {
    if (!want.has(name)) problems.push(`extra output ${name} that torch does not produce`);
  }
  for (const [name, w] of want) {
    const r = judgeOne(name, results[name], w, tolerance(meta, name));
    if (r) { problems.push(r.problem); error = error || r.error; }
  }
  return { status: problems.length === 0 ? 'pass' : (error ? 'error' : 'fail'), message: problems.join('; ') };
}

async function replaySet(dir, set) {
  const data = join(dir, set);
  // case.json only names the case and may tighten tolerances; anything but a JSON object
  // (a list, null, nesting too deep to parse) counts as absent
  let meta = {};
  try { meta = existsSync(join(data, 'case.json')) ? JSON.parse(readFileSync(join(data, 'case.json'))) : {}; } catch { meta = {}; }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) meta = {};
  const caseName = typeof meta.case === 'string' ? meta.case : `${dir}/${set}`;
  let sess;
  try {
    sess = await session(join(dir, 'model.onnx'));
  } catch (e) {   // the backend refuses the model: never a pass, and no numbers to judge
    return { case: caseName, status: 'unsupported', message: String(e.message || e).split('\n')[0] };
  }
  try {
    const tensors = [...named(readTensors(data, 'input'), sess.inputNames, 'input')]
      .map(([name, t]) => ({ ...t, name }));
    const wantList = readTensors(data, 'output');
    const results = await sess.run(tensors);
    return { case: caseName, ...judge(sess, results, wantList, meta) };
  } catch (e) {
    return { case: caseName, status: 'error', message: String(e.message || e).split('\n')[0] };
  }
}

async function replay(root) {
  const models = existsSync(join(root, 'model.onnx')) ? [root]
    : readdirSync(root).map((d) => join(root, d)).filter((d) => existsSync(join(d, 'model.onnx')));
  const counts = { pass: 0, fail: 0, error: 0, unsupported: 0 };
  for (const dir of models.sort()) {
    let sets;
    try {
      sets = readdirSync(dir).filter((d) => d.startsWith('test_data_set_') && statSync(join(dir, d)).isDirectory());
    } catch (e) {   // one unreadable folder is its own error, not the replay's end
      counts.error++;
      console.log(JSON.stringify({ case: dir, ok: false, status: 'error', message: String(e.message || e).split('\n')[0] }));
      continue;
    }
    if (sets.length === 0) {
      counts.error++;
      console.log(JSON.stringify({ case: dir, ok: false, status: 'error', message: 'no test_data_set_* folder: nothing to check' }));
    }
    for (const set of sets.sort()) {
      const r = await replaySet(dir, set);
      counts[r.status]++;
      console.log(JSON.stringify({ ...r, ok: r.status === 'pass' }));
    }
  }
  // Read by CI runners as a closing line; any fail or error, or nothing judged, exits 1.
  const failed = counts.fail + counts.error + counts.unsupported;
  console.log(`${counts.pass} passed, ${failed} failed`);
  return failed === 0 && counts.pass > 0 ? 0 : 1;
}

if (args[0] === 'serve') await serve();
else if (args[0] === 'replay' && args[1]) {
  process.exitCode = await replay(args[1]);
  if (enginePromise) await (await enginePromise.catch(() => ({ close() {} }))).close();
} else {
  console.error(`usage: node harness.mjs serve|replay DIR [--backend ${Object.keys(BACKENDS).join('|')}]`);
  process.exitCode = 2;
}
