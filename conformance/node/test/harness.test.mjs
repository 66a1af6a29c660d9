// `npm test` in conformance/node: the harness's own TensorProto reader and its verdicts, with
// no onnxruntime involved (the Python suite runs the harness against real runtimes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeTensor } from '../tensor.mjs';

const here = dirname(fileURLToPath(import.meta.url));

function varint(n) {
  const out = [];
  do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n);
  return out;
}

// TensorProto: dims (1), data_type (2), name (8), raw_data (9)
function tensor(name, dims, values) {
  const raw = Buffer.from(new Float32Array(values).buffer);
  const bytes = [];
  for (const d of dims) bytes.push(0x08, ...varint(d));
  bytes.push(0x10, 1);
  bytes.push(0x42, ...varint(name.length), ...Buffer.from(name));
  bytes.push(0x4a, ...varint(raw.length), ...raw);
  return Buffer.from(bytes);
}

test('decodes a float32 TensorProto with raw data', () => {
  const t = decodeTensor(tensor('h_n', [1, 2], [1.5, -2]));
  assert.equal(t.name, 'h_n');
  assert.deepEqual(t.dims.map(Number), [1, 2]);
  assert.equal(t.dtype, 'float32');
  assert.deepEqual(Array.from(t.data), [1.5, -2]);
});

test('a folder with no test data sets is never a pass', () => {
  const root = mkdtempSync(join(tmpdir(), 'harness-'));
  mkdirSync(join(root, 'm'));
  writeFileSync(join(root, 'm', 'model.onnx'), '');
  const r = spawnSync(process.execPath, [join(here, '..', 'harness.mjs'), 'replay', root], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /0 passed, 1 failed/);
});
