// onnxruntime-web in a real headless Chromium, for harness.mjs: a page served from 127.0.0.1
// (page.html), driven with playwright-core; the engine has the same shape as harness.mjs's
// in-process one (create(model, external) → session with run(tensors)).
//
// The browser: $CONFORMANCE_CHROMIUM if set, else the Chromium that the npm package
// @sparticuz/chromium ships (unpacked once into $CONFORMANCE_BROWSER_DIR, the runner's cache),
// else `chromium` / `chromium-browser` / `google-chrome` on PATH. WebGPU runs on SwiftShader's
// software Vulkan adapter (no GPU needed); a real GPU is used where Chromium finds one.
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';

const here = dirname(fileURLToPath(import.meta.url));
const ORT_DIST = join(here, 'node_modules', 'onnxruntime-web', 'dist');

export const INSTALL = 'cd conformance/node && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci '
  + '(installs playwright-core and @sparticuz/chromium), or set CONFORMANCE_CHROMIUM to a Chromium binary';

// Chromium's flags: no network beyond 127.0.0.1, a software WebGPU adapter (SwiftShader's
// Vulkan) where no GPU is present.
const FLAGS = ['--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage'];
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader', '--enable-unsafe-swiftshader'];

export class Unavailable extends Error {}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function onPath(names) {
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    for (const n of names) if (dir && existsSync(join(dir, n))) return join(dir, n);
  }
  return null;
}

async function withLock(dir, fn) {
  // mkdir is atomic: one process unpacks, the others wait (a lock older than 5 min is stale)
  const lock = `${dir}.lock`;
  for (let waited = 0; ; waited += 200) {
    try { mkdirSync(lock, { recursive: false }); break; } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      try { if (Date.now() - statSync(lock).mtimeMs > 300000) rmdirSync(lock); } catch { /* gone */ }
      if (waited > 600000) throw new Error(`waited 10 min for ${lock}`);
      await sleep(200);
    }
  }
  try { return await fn(); } finally { try { rmdirSync(lock); } catch { /* gone */ } }
}

async function packagedChromium() {
  let pkg;
  try { pkg = (await import('@sparticuz/chromium')).default; } catch { return null; }
  // where it is unpacked: the runner's cache (conformance/versions.py: cache_root()), one
  // folder per release of the package
  const release = JSON.parse(readFileSync(join(here, 'node_modules', '@sparticuz', 'chromium', 'package.json'))).version;
  const cache = process.env.TORCH_RNN_ONNX_CACHE
    || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'torch-rnn-onnx');
  const dir = process.env.CONFORMANCE_BROWSER_DIR || join(cache, 'browser', `chromium-${release}`);
  const ready = () => ['chromium', 'vk_swiftshader_icd.json', 'libvk_swiftshader.so']
    .every((f) => existsSync(join(dir, f)) && statSync(join(dir, f)).size > 0);
  mkdirSync(dirname(dir), { recursive: true });
  return withLock(dir, async () => {
    if (!ready()) {
      // the package unpacks into os.tmpdir(); pointed at our folder, and its SwiftShader files
      // (unpacked in the background after executablePath() resolves) waited for
      mkdirSync(dir, { recursive: true });
      const saved = process.env.TMPDIR;
      process.env.TMPDIR = dir;
      try { await pkg.executablePath(); } finally {
        if (saved === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = saved;
      }
      for (let t = 0; !ready(); t += 100) {
        if (t > 120000) throw new Error(`@sparticuz/chromium did not unpack into ${dir}`);
        await sleep(100);
      }
      await sleep(500);   // the last file's final bytes
    }
    return join(dir, 'chromium');
  });
}

async function executable() {
  if (process.env.CONFORMANCE_CHROMIUM) {
    if (!existsSync(process.env.CONFORMANCE_CHROMIUM)) {
      throw new Unavailable(`CONFORMANCE_CHROMIUM=${process.env.CONFORMANCE_CHROMIUM} does not exist`);
    }
    return process.env.CONFORMANCE_CHROMIUM;
  }
  const packaged = await packagedChromium();
  if (packaged) return packaged;
  const found = onPath(['chromium', 'chromium-browser', 'google-chrome']);
  if (!found) throw new Unavailable(`no Chromium found: ${INSTALL}`);
  return found;
}

function serve(models) {
  // 127.0.0.1 only: the page, onnxruntime-web's dist files, and the registered model files
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let file = null; let type = 'application/octet-stream';
    if (url.pathname === '/') { file = join(here, 'page.html'); type = 'text/html'; }
    else if (url.pathname.startsWith('/ort/')) {
      const f = resolve(ORT_DIST, url.pathname.slice(5));
      if (f.startsWith(ORT_DIST + sep)) file = f;
      if (f.endsWith('.mjs')) type = 'text/javascript';
      if (f.endsWith('.wasm')) type = 'application/wasm';
    } else if (url.pathname.startsWith('/file/')) file = models.get(url.pathname.slice(6)) || null;
    if (!file || !existsSync(file)) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': type });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const b64 = (data) => Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
const ARRAYS = { float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array };

function placement(lines) {
  // onnxruntime's info log of a session created with the CPU fallback allowed: the nodes its
  // device provider has no kernel for, and how many nodes went to the CPU in all
  const cpu = new Map(); let count = null;
  for (const l of lines) {
    const m = l.match(/kernel not found in registries for Op type: (\S+) node name: (.*)$/);
    if (m) cpu.set(m[2].trim(), m[1]);
    const n = l.match(/Node\(s\) placed on \[CPUExecutionProvider\]\. Number of nodes: (\d+)/);
    if (n) count = Number(n[1]);
  }
  return { cpuNodes: [...cpu].map(([name, op]) => ({ name, op })), cpuCount: count };
}

export async function openBrowser({ bundle, webgpu, sessionOptions }) {
  let chromium;
  try { ({ chromium } = await import('playwright-core')); } catch {
    throw new Unavailable(`playwright-core is not installed: ${INSTALL}`);
  }
  const exe = await executable();
  const models = new Map();
  const server = await serve(models);
  const browser = await chromium.launch({ executablePath: exe, headless: true,
    args: webgpu ? [...FLAGS, ...WEBGPU_FLAGS] : FLAGS });
  const base = `http://127.0.0.1:${server.address().port}`;
  let page = null; let crashed = null; let logs = null;
  async function openPage() {
    page = await browser.newPage();
    crashed = null;
    page.on('crash', () => { crashed = 'the page crashed'; });
    page.on('pageerror', (e) => { crashed ||= `page error: ${String(e.message || e).split('\n')[0]}`; });
    page.on('console', (m) => { if (logs) logs.push(m.text()); });
    await page.goto(`${base}/?bundle=${encodeURIComponent(bundle)}`);
    await page.waitForFunction(() => window.harnessReady === true || undefined, null, { timeout: 60000 });
  }
  async function call(fn, arg) {
    if (crashed) throw new Error(crashed);
    try { return await page.evaluate(fn, arg); } catch (e) {
      throw new Error(crashed || String(e.message || e).replace(/^page\.evaluate: /, '').split('\n')[0]);
    }
  }
  try {
    await openPage();
  } catch (e) {
    await browser.close(); server.close();
    throw e;
  }
  const version = await call(() => window.harness.version);
  const adapter = webgpu ? await call(() => window.harness.adapter()) : null;
  if (webgpu && !adapter) {
    await browser.close(); server.close();
    throw new Unavailable(`Chromium ${browser.version()} at ${exe} offers no WebGPU adapter`);
  }
  let token = 0;
  return {
    version,
    provider: webgpu ? `webgpu (${adapter}), Chromium ${browser.version()}` : `wasm, Chromium ${browser.version()}`,
    async create(model, external = []) {
      if (crashed) await openPage();       // a crash ends that model's cells, not the run
      models.clear();
      const key = (path) => { const k = String(++token); models.set(k, path); return `${base}/file/${k}`; };
      const ext = external.map((path) => ({ path, url: key(join(dirname(model), path)) }));
      const lines = logs = [];
      let loaded;
      try {
        loaded = await call(([url, e, o]) => window.harness.load(url, e, o), [key(model), ext, sessionOptions]);
      } finally {
        logs = null;
      }
      // reloaded after a strict refusal: what went to the CPU, for the runner to judge
      const { refusal, ...names } = loaded;
      return {
        ...names,
        placement: refusal ? { refusal, ...placement(lines) } : null,
        async run(tensors) {
          const feeds = tensors.map((t) => ({ name: t.name, dtype: t.dtype, dims: Array.from(t.dims, Number), data: b64(t.data) }));
          const outs = await call((f) => window.harness.run(f), feeds);
          const results = {};
          for (const o of outs) {
            const buf = Buffer.from(o.data, 'base64');
            const copy = new Uint8Array(buf).buffer;     // aligned
            results[o.name] = { type: o.dtype, dims: o.dims, data: new ARRAYS[o.dtype](copy) };
          }
          return results;
        },
      };
    },
    async close() { await browser.close(); server.close(); },
  };
}
