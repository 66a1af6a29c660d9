// Minimal reader of ONNX TensorProto messages (the .pb files of ONNX test vectors):
// dims (1), data_type (2), float_data (4), int32_data (5), int64_data (7), name (8),
// raw_data (9), double_data (10). Little-endian raw_data, as onnx's numpy_helper writes it.
const TYPES = {
  1: ['float32', Float32Array], 6: ['int32', Int32Array], 7: ['int64', BigInt64Array],
  11: ['float64', Float64Array],
};

function varint(buf, pos) {
  let result = 0n; let shift = 0n; let byte;
  do {
    byte = buf[pos++];
    result |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
  } while (byte & 0x80);
  return [result, pos];
}

function packedOrSingle(buf, pos, wire, readOne) {
  // repeated scalar fields may be packed (wire 2) or one value per tag
  if (wire !== 2) return readOne(buf, pos);
  const [len, start] = varint(buf, pos);
  const end = start + Number(len);
  const values = [];
  let p = start;
  while (p < end) { const [v, np] = readOne(buf, p); values.push(...[].concat(v)); p = np; }
  return [values, end];
}

export function decodeTensor(buf) {
  const t = { dims: [], dataType: 0, name: '', raw: null, floats: [], ints: [] };
  let pos = 0;
  while (pos < buf.length) {
    const [key, p1] = varint(buf, pos);
    const field = Number(key >> 3n); const wire = Number(key & 7n);
    pos = p1;
    if (field === 1) {
      const [v, p] = packedOrSingle(buf, pos, wire, (b, q) => { const [x, n] = varint(b, q); return [[Number(BigInt.asIntN(64, x))], n]; });
      t.dims.push(...v); pos = p;
    } else if (field === 2) {
      const [v, p] = varint(buf, pos); t.dataType = Number(v); pos = p;
    } else if (field === 4) {
      const [v, p] = packedOrSingle(buf, pos, wire, (b, q) => [[b.readFloatLE(q)], q + 4]);
      t.floats.push(...v); pos = p;
    } else if (field === 5 || field === 7) {
      const [v, p] = packedOrSingle(buf, pos, wire, (b, q) => { const [x, n] = varint(b, q); return [[BigInt.asIntN(64, x)], n]; });
      t.ints.push(...v); pos = p;
    } else if (field === 8 || field === 9) {
      const [len, start] = varint(buf, pos);
      const bytes = buf.subarray(start, start + Number(len));
      if (field === 8) t.name = bytes.toString('utf8'); else t.raw = bytes;
      pos = start + Number(len);
    } else if (wire === 0) { pos = varint(buf, pos)[1]; }
    else if (wire === 1) { pos += 8; }
    else if (wire === 2) { const [len, start] = varint(buf, pos); pos = start + Number(len); }
    else if (wire === 5) { pos += 4; }
    else throw new Error(`TensorProto: unsupported wire type ${wire}`);
  }
  const type = TYPES[t.dataType];
  if (!type) throw new Error(`TensorProto ${t.name}: unsupported data_type ${t.dataType}`);
  const [dtype, Arr] = type;
  let data;
  if (t.raw) {
    const copy = Buffer.from(t.raw); // aligned copy
    data = new Arr(copy.buffer, copy.byteOffset, copy.byteLength / Arr.BYTES_PER_ELEMENT);
  } else if (dtype === 'float32' || dtype === 'float64') {
    data = Arr.from(t.floats);
  } else if (dtype === 'int64') {
    data = BigInt64Array.from(t.ints);
  } else {
    data = Int32Array.from(t.ints.map(Number));
  }
  return { name: t.name, dims: t.dims, dtype, data };
}
