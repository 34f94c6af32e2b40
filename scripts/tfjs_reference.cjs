#!/usr/bin/env node
// The reference run of a TF.js graph model: TensorFlow.js itself (pure-JS CPU backend), so that
// detector/tfjs.py and the teachers can be checked against it. Driven by scripts/make_tfjs_fixture.py:
//
//   NODE_PATH=.cache/tfjs-ref/node_modules node scripts/tfjs_reference.cjs JOB.json
//
// JOB.json: {"model": "nanodet.json", "input": {"name": "input_1", "file": "x.bin", "shape": [1, 3, 416, 416]},
//            "fetch": ["Identity:0", ...], "decode": "nanodet" | "centernet" | null,
//            "score_threshold": 0.25, "iou_threshold": 0.6, "out": "DIR"}
// Writes DIR/<i>.bin (float32, little-endian) per fetched tensor, DIR/detections.json (the decoded
// detections in input pixels: [x1, y1, x2, y2, score, class 0..79], per-class NMS by TF.js's own
// tf.image.nonMaxSuppression), and DIR/outputs.json (names, shapes, seconds).
//
// The NanoDet decoding follows upstream NanoDet (GFLHead.get_bboxes_single, v0.4.2): cell centres
// ((x + 0.5)·s, (y + 0.5)·s), distances = softmax(11 bins)·[0..10]·s, boxes clipped to the input.
// (The human library decodes differently: argmax bin × 2.5 — not upstream's, so not used here.)
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const converter = require('@tensorflow/tfjs-converter');

function readModel(file) {
  const model = JSON.parse(fs.readFileSync(file, 'utf8'));
  const specs = [];
  const buffers = [];
  for (const group of model.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(file), p)));
  }
  const data = Buffer.concat(buffers);
  return tf.io.fromMemory({
    modelTopology: model.modelTopology, weightSpecs: specs,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
    format: model.format, generatedBy: model.generatedBy, convertedBy: model.convertedBy,
    signature: model.signature,
  });
}

function nmsPerClass(boxes, scores, classes, iou) {
  // boxes: [N, 4] x1 y1 x2 y2 (JS arrays); TF.js NMS wants y1 x1 y2 x2
  const keep = [];
  for (const c of [...new Set(classes)]) {
    const idx = classes.map((k, i) => (k === c ? i : -1)).filter((i) => i >= 0);
    const b = tf.tensor2d(idx.map((i) => [boxes[i][1], boxes[i][0], boxes[i][3], boxes[i][2]]), [idx.length, 4]);
    const s = tf.tensor1d(idx.map((i) => scores[i]));
    const sel = tf.image.nonMaxSuppression(b, s, idx.length, iou, -Infinity).arraySync();
    for (const j of sel) keep.push(idx[j]);
    tf.dispose([b, s]);
  }
  keep.sort((a, b) => scores[b] - scores[a]);
  return keep.slice(0, 100).map((i) => [...boxes[i], scores[i], classes[i]]);
}

function decodeNanodet(outputs, size, thr, iou) {
  const cls = outputs.filter((t) => t.shape[2] === 80).sort((a, b) => b.shape[1] - a.shape[1]);
  const reg = outputs.filter((t) => t.shape[2] !== 80).sort((a, b) => b.shape[1] - a.shape[1]);
  const boxes = []; const scores = []; const classes = [];
  [8, 16, 32].forEach((stride, level) => {
    const w = size / stride;
    const s = tf.squeeze(cls[level]).arraySync();
    const dist = tf.tidy(() => {
      const bins = tf.softmax(tf.reshape(reg[level], [-1, 4, 11]), -1);
      return tf.mul(tf.sum(tf.mul(bins, tf.range(0, 11, 1, 'float32')), -1), stride).arraySync();
    });
    for (let i = 0; i < s.length; i += 1) {
      const cx = ((i % w) + 0.5) * stride;
      const cy = (Math.floor(i / w) + 0.5) * stride;
      const clip = (v) => Math.min(Math.max(v, 0), size);
      const box = [clip(cx - dist[i][0]), clip(cy - dist[i][1]), clip(cx + dist[i][2]), clip(cy + dist[i][3])];
      for (let c = 0; c < 80; c += 1) {
        if (s[i][c] >= thr) { boxes.push(box); scores.push(s[i][c]); classes.push(c); }
      }
    }
  });
  return nmsPerClass(boxes, scores, classes, iou);
}

function decodeCenternet(rows, thr, iou) {
  const kept = tf.squeeze(rows).arraySync().filter((r) => r[4] >= thr);
  return nmsPerClass(kept.map((r) => r.slice(0, 4)), kept.map((r) => r[4]), kept.map((r) => Math.round(r[5])), iou);
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  await tf.setBackend('cpu');
  const model = await converter.loadGraphModel(readModel(job.model));
  const raw = fs.readFileSync(job.input.file);
  const x = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), job.input.shape, 'float32');
  const started = Date.now();
  const outputs = model.execute({ [job.input.name]: x }, job.fetch);
  const list = Array.isArray(outputs) ? outputs : [outputs];
  const seconds = (Date.now() - started) / 1000;
  fs.mkdirSync(job.out, { recursive: true });
  const meta = { backend: tf.getBackend(), tfjs: tf.version_core, seconds, outputs: [] };
  list.forEach((t, i) => {
    fs.writeFileSync(path.join(job.out, `${i}.bin`), Buffer.from(tf.cast(t, 'float32').dataSync().buffer));
    meta.outputs.push({ name: job.fetch[i], shape: t.shape, dtype: t.dtype });
  });
  let detections = null;
  if (job.decode === 'nanodet') {
    detections = decodeNanodet(list.slice(0, 6), job.input.shape[2], job.score_threshold, job.iou_threshold);
  } else if (job.decode === 'centernet') {
    detections = decodeCenternet(list[job.fetch.indexOf('tower_0/detections')], job.score_threshold, job.iou_threshold);
  }
  fs.writeFileSync(path.join(job.out, 'detections.json'), JSON.stringify(detections));
  fs.writeFileSync(path.join(job.out, 'outputs.json'), JSON.stringify(meta, null, 1));
}

main().catch((err) => { console.error(`error: ${err.message}`); process.exit(1); });
