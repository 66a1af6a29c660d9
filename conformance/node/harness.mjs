// Node.js harness of the conformance runner: runs ONNX models on onnxruntime-node (or
// onnxruntime-web's wasm backend) with inputs read from ONNX test vectors on disk.
//
//   node harness.mjs serve [--backend node|web]   JSON lines on stdin → JSON lines on stdout
//       {"cmd":"hello"}                          → {"ok":true,"version":"1.30.0","backend":"node"}
//       {"cmd":"load","model":PATH}              → {"ok":true} | {"ok":false,"error":MSG}
//       {"cmd":"run","model":PATH,"dataset":DIR} → {"ok":true,"outputs":[{name,dims,dtype,data}],"seconds":S}
//     DIR holds input_<k>.pb (TensorProto); output data is base64 of little-endian values.
//     The process ends when stdin closes.
//   node harness.mjs replay DIR [--backend node|web]
//     Replays every <model>/test_data_set_<k> under DIR (the runner's `vectors` layout) and
//     compares with output_<k>.pb using the tolerances in case.json; exit 1 on any failure.
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { decodeTensor } from './tensor.mjs';

const args = process.argv.slice(2);
const backendName = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'node';
if (!['node', 'web'].includes(backendName)) {
  console.error(`harness: unknown backend ${backendName}`);
  process.exit(2);
}
const ort = backendName === 'web' ? await import('onnxruntime-web') : await import('onnxruntime-node');
ort.env.logLevel = 'fatal';
if (backendName === 'web') ort.env.wasm.numThreads = 1;
const version = backendName === 'web' ? ort.env.versions.web : ort.env.versions.node;

const sessions = new Map();
async function session(model) {
  if (!sessions.has(model)) {
    sessions.clear(); // one model at a time, as the Python adapters do
    sessions.set(model, await ort.InferenceSession.create(model, { logSeverityLevel: 3 }));
  }
  return sessions.get(model);
}

function readTensors(dir, prefix) {
  const files = readdirSync(dir).filter((f) => f.startsWith(`${prefix}_`) && f.endsWith('.pb'));
  files.sort((a, b) => parseInt(a.split('_')[1]) - parseInt(b.split('_')[1]));
  return files.map((f) => decodeTensor(readFileSync(join(dir, f))));
}

function toOrt(t) {
  return new ort.Tensor(t.dtype, t.data, t.dims);
}

async function run(model, dataset) {
  const sess = await session(model);
  const feeds = {};
  for (const t of readTensors(dataset, 'input')) feeds[t.name] = toOrt(t);
  const start = performance.now();
  const results = await sess.run(feeds);
  const seconds = (performance.now() - start) / 1000;
  const outputs = sess.outputNames.map((name) => {
    const r = results[name];
    const bytes = Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength);
    return { name, dims: Array.from(r.dims), dtype: r.type, data: bytes.toString('base64') };
  });
  return { outputs, seconds };
}

async function serve() {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let reply;
    try {
      const msg = JSON.parse(line);
      if (msg.cmd === 'hello') reply = { ok: true, version, backend: backendName };
      else if (msg.cmd === 'load') { await session(msg.model); reply = { ok: true }; }
      else if (msg.cmd === 'run') reply = { ok: true, ...(await run(msg.model, msg.dataset)) };
      else reply = { ok: false, error: `unknown command ${msg.cmd}` };
    } catch (e) {
      reply = { ok: false, error: String(e && e.message ? e.message : e).split('\n')[0] };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
}

function close(got, want, tol) {
  if (got.length !== want.length) return false;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= tol.atol + tol.rtol * Math.abs(want[i]))) return false;
  }
  return true;
}

async function replay(root) {
  const models = existsSync(join(root, 'model.onnx')) ? [root]
    : readdirSync(root).map((d) => join(root, d)).filter((d) => existsSync(join(d, 'model.onnx')));
  let passed = 0; let failed = 0;
  for (const dir of models.sort()) {
    const sets = readdirSync(dir).filter((d) => d.startsWith('test_data_set_') && statSync(join(dir, d)).isDirectory());
    for (const set of sets.sort()) {
      const data = join(dir, set);
      const meta = existsSync(join(data, 'case.json')) ? JSON.parse(readFileSync(join(data, 'case.json'))) : {};
      const want = readTensors(data, 'output');
      let ok = true; let message = '';
      try {
        const sess = await session(join(dir, 'model.onnx'));
        const feeds = {};
        for (const t of readTensors(data, 'input')) feeds[t.name] = toOrt(t);
        const results = await sess.run(feeds);
        for (const w of want) {
          const tol = (meta.tolerance && meta.tolerance[w.name]) || { atol: 1e-5, rtol: 1e-4 };
          if (!close(results[w.name].data, w.data, tol)) { ok = false; message = `${w.name} outside tolerance`; }
        }
      } catch (e) {
        ok = false; message = String(e.message || e).split('\n')[0];
      }
      ok ? passed++ : failed++;
      console.log(JSON.stringify({ case: meta.case || `${dir}/${set}`, ok, message }));
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

if (args[0] === 'serve') await serve();
else if (args[0] === 'replay' && args[1]) process.exitCode = await replay(args[1]);
else { console.error('usage: node harness.mjs serve|replay DIR [--backend node|web]'); process.exitCode = 2; }
