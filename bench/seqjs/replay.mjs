// replay.mjs replays editing traces with Yjs and Automerge and prints one
// JSON line per implementation and trace, for bench/run.sh:
//
//	node --expose-gc replay.mjs TRACE.json.gz...
//
// Each line has: replay_ms and replay_cpu_ms (the local edits, one
// transaction or change per edit, as an editor makes them: wall time and
// the process's user+system CPU time), bytes (the encoded final state:
// Y.encodeStateAsUpdate, Automerge.save), load_ms (that state into an empty
// replica: Y.applyUpdate, Automerge.load; load_cpu_ms likewise), heap_bytes (process heapUsed
// after GC with only the replayed document alive) and, for Automerge,
// external_bytes (its WebAssembly memory, which heapUsed does not count).
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { basename } from 'node:path'
import * as Y from 'yjs'
import { next as A } from '@automerge/automerge'

const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
const gc = () => { if (globalThis.gc) { globalThis.gc(); globalThis.gc() } }
const heap = () => { gc(); const m = process.memoryUsage(); return { heap: m.heapUsed, external: m.external + m.arrayBuffers } }

function load (path) {
  const t = JSON.parse(gunzipSync(readFileSync(path)).toString('utf8'))
  const patches = []
  for (const txn of t.txns) for (const p of txn.patches) patches.push(p)
  return { name: basename(path).replace(/\.json\.gz$/, ''), patches, end: t.endContent }
}

function yjs (tr) {
  const before = heap()
  const c0 = cpu()
  const t0 = performance.now()
  const doc = new Y.Doc()
  const text = doc.getText('text')
  for (const [pos, del, ins] of tr.patches) {
    if (del > 0) text.delete(pos, del)
    if (ins !== '') text.insert(pos, ins)
  }
  const replay = performance.now() - t0
  const replayCPU = cpu() - c0
  if (text.toString() !== tr.end) throw new Error('yjs: wrong final text')
  const after = heap()
  const update = Y.encodeStateAsUpdate(doc)
  const c1 = cpu()
  const t1 = performance.now()
  const doc2 = new Y.Doc()
  Y.applyUpdate(doc2, update)
  const loaded = performance.now() - t1
  const loadedCPU = cpu() - c1
  if (doc2.getText('text').toString() !== tr.end) throw new Error('yjs: wrong loaded text')
  return { impl: 'yjs', version: pkgVersion('yjs'), trace: tr.name, replay_ms: replay, replay_cpu_ms: replayCPU, bytes: update.length, load_ms: loaded, load_cpu_ms: loadedCPU, heap_bytes: after.heap - before.heap, keep: doc }
}

function automerge (tr) {
  const before = heap()
  const c0 = cpu()
  const t0 = performance.now()
  let doc = A.from({ text: '' })
  for (const [pos, del, ins] of tr.patches) {
    doc = A.change(doc, d => { A.splice(d, ['text'], pos, del, ins) })
  }
  const replay = performance.now() - t0
  const replayCPU = cpu() - c0
  if (doc.text !== tr.end) throw new Error('automerge: wrong final text')
  const after = heap()
  const saved = A.save(doc)
  const c1 = cpu()
  const t1 = performance.now()
  const doc2 = A.load(saved)
  const loaded = performance.now() - t1
  const loadedCPU = cpu() - c1
  if (doc2.text !== tr.end) throw new Error('automerge: wrong loaded text')
  return { impl: 'automerge', version: pkgVersion('@automerge/automerge'), trace: tr.name, replay_ms: replay, replay_cpu_ms: replayCPU, bytes: saved.length, load_ms: loaded, load_cpu_ms: loadedCPU, heap_bytes: after.heap - before.heap, external_bytes: after.external, keep: doc }
}

function pkgVersion (name) {
  return JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version
}

const only = process.env.IMPLS ? process.env.IMPLS.split(',') : ['yjs', 'automerge']
for (const path of process.argv.slice(2)) {
  const tr = load(path)
  for (const [name, run] of [['yjs', yjs], ['automerge', automerge]]) {
    if (!only.includes(name)) continue
    const r = run(tr)
    delete r.keep
    console.log(JSON.stringify(r))
  }
}
