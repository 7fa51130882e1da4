// Tag sentences with a `tagger export MODEL --to onnx DIR` directory from Node.js, through onnxruntime-node.
//
//   npm install                                    # onnxruntime-node (.npmrc skips its CUDA download)
//   node tag.mjs DIR John Smith visited Paris .    # one sentence of tokens -> {"tokens", "tags", "entities"}
//   echo "John visited Paris ." | node tag.mjs DIR # one sentence a line, tokens split on spaces
//   node tag.mjs DIR --check                       # reproduce preprocess.json's test vectors, exit 1 if not
//
// The caller's steps of preprocess.json ("caller_steps"): lower-casing, casing classes, character ids, the
// lexicon's cells and LAC's normalisation. lookup.onnx turns the strings into ids (word, bigram, context and
// feature ids) and model.onnx runs the network and Viterbi.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import ort from "onnxruntime-node";

// str.isdigit: Unicode decimal digits (Nd), and the other digits Python counts (superscripts, circled, ...)
const isDigit = (c) => /^\p{Nd}$/u.test(c) || /^[\u{b2}-\u{b3}\u{b9}\u{1369}-\u{1371}\u{19da}\u{2070}\u{2074}-\u{2079}\u{2080}-\u{2089}\u{2460}-\u{2468}\u{2474}-\u{247c}\u{2488}-\u{2490}\u{24ea}\u{24f5}-\u{24fd}\u{24ff}\u{2776}-\u{277e}\u{2780}-\u{2788}\u{278a}-\u{2792}\u{10a40}-\u{10a43}\u{10e60}-\u{10e68}\u{11052}-\u{1105a}\u{1f100}-\u{1f10a}]$/u.test(c);
const isAlnum = (c) => /^[\p{L}\p{N}]$/u.test(c);
const lower = /\p{Lowercase}/u, upper = /\p{Uppercase}/u, title = /\p{Lt}/u;

// tagger.vocab.casing: Python's str.isdigit / islower / isupper / isalnum, first match wins
export function casing(word) {
  const chars = Array.from(word);
  const digits = chars.filter(isDigit).length;
  if (chars.length && digits === chars.length) return 1;
  if (digits / Math.max(chars.length, 1) > 0.5) return 2;
  if (lower.test(word) && !upper.test(word) && !title.test(word)) return 3;
  if (upper.test(word) && !lower.test(word) && !title.test(word)) return 4;
  if (chars.length && upper.test(chars[0])) return 5;
  if (digits) return 6;
  if (!chars.some(isAlnum)) return 7;
  return 8;
}

// the lexicon's 24 cells of each token (preprocess.json lexicon.rule)
export function lexiconCells(tokens, words, scale, longest) {
  const count = tokens.map(() => new Array(12).fill(0)), mass = tokens.map(() => new Array(12).fill(0));
  const add = (i, cell, f) => { count[i][cell] += 1; mass[i][cell] += f; };
  for (let i = 0; i < tokens.length; i++) {
    let key = "";
    for (let j = i; j < tokens.length; j++) {
      key += tokens[j];
      if (Array.from(key).length > longest) break;
      if (!words.has(key)) continue;
      const f = words.get(key), n = j + 1 - i, b = Math.min(n, 5);
      if (n === 1) { add(i, 0, f); continue; }
      add(i, 1 + b - 2, f);
      for (let k = i + 1; k < j; k++) add(k, 5 + b - 3, f);
      add(j, 8 + b - 2, f);
    }
  }
  return tokens.map((_, t) => [...count[t].map((c) => (c > 0 ? 1 : 0)), ...mass[t].map((m) => Math.log1p(m) / scale)]);
}

// LAC's input form: full-width ASCII as half-width, the ideographic space as a space
const normalise = (token) => Array.from(token).map((c) => {
  const code = c.codePointAt(0);
  return code >= 0xff01 && code <= 0xff5e ? String.fromCodePoint(code - 0xfee0) : code === 0x3000 ? " " : c;
}).join("");

// entities as (label, first token, end token exclusive), read from the tags as conlleval reads them
const ROLES = { B: "B", I: "I", M: "I", E: "E", L: "E", S: "S", U: "S" };
export function spans(tags) {
  const out = [];
  let pRole = "O", pLabel = null, start = 0, last = -1;
  tags.forEach((tag, i) => {
    if (tag === "O") return;
    const cut = tag.indexOf("-"), role = ROLES[tag.slice(0, cut)], label = tag.slice(cut + 1);
    if (pRole !== "O" && i > last + 1) { out.push([pLabel, start, last + 1]); pRole = "O"; }
    if (pRole !== "O" && ("ES".includes(pRole) || "BS".includes(role) || pLabel !== label)) out.push([pLabel, start, i]);
    if ("OES".includes(pRole) || "BS".includes(role) || pLabel !== label) start = i;
    pRole = role; pLabel = label; last = i;
  });
  if (pRole !== "O") out.push([pLabel, start, last + 1]);
  return out;
}

export class OnnxTagger {
  static async load(dir) {
    const spec = JSON.parse(readFileSync(join(dir, "preprocess.json"), "utf8"));
    const options = { executionProviders: ["cpu"], intraOpNumThreads: 1 };
    const [model, lookup] = await Promise.all([ort.InferenceSession.create(join(dir, spec.files.model), options),
                                                ort.InferenceSession.create(join(dir, spec.files.lookup), options)]);
    return new OnnxTagger(spec, model, lookup);
  }

  constructor(spec, model, lookup) {
    this.spec = spec; this.model = model; this.lookup = lookup;
    this.chars = new Map(spec.vocab.chars.map((c, i) => [c, i]));
    if (spec.lexicon) {
      this.words = new Map(spec.lexicon.words);
      this.longest = Math.max(...spec.lexicon.words.map(([w]) => Array.from(w).length));
    }
  }

  // what the caller computes, per sentence (preprocess.json caller_steps)
  prepare(tokens) {
    const c = this.spec.config, out = { tokens, casing: tokens.map(casing) };
    if (this.spec.words.lowercase) out.lowered = tokens.map((t) => t.toLowerCase());
    if (c.char_encoder !== "none") {
      out.chars = tokens.map((t) => (t === "" ? [1] : Array.from(t).map((ch) => this.chars.get(ch) ?? 1)));
    }
    if (c.lexicon) out.lexicon = lexiconCells(tokens, this.words, this.spec.lexicon.scale, this.longest);
    if (c.context === "lac") out.context_tokens = tokens.map(normalise);
    return out;
  }

  // sentences (arrays of tokens; features: per sentence, per column, per token) -> ids, tag ids, tags, scores
  async tag(sentences, features = null) {
    const prepared = sentences.map((s) => this.prepare(s));
    const B = sentences.length, T = Math.max(...sentences.map((s) => s.length));
    const pad = (rows, fill) => rows.flatMap((r) => [...r, ...new Array(T - r.length).fill(fill)]);
    const strings = (key) => new ort.Tensor("string", pad(prepared.map((p) => p[key]), ""), [B, T]);
    const int64 = (values, dims) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);
    const lengths = int64(sentences.map((s) => s.length), [B]);
    const given = { tokens: () => strings("tokens"), lowered: () => strings("lowered"), lengths: () => lengths,
                    context_tokens: () => strings("context_tokens"),
                    features: () => new ort.Tensor("string", features.flatMap((cols) => cols.flatMap((col) =>
                      [...col, ...new Array(T - col.length).fill("")])), [B, features[0].length, T]) };
    const ids = await this.lookup.run(Object.fromEntries(this.lookup.inputNames.map((n) => [n, given[n]()])));
    const feeds = { casing: int64(pad(prepared.map((p) => p.casing), 0), [B, T]), lengths };
    for (const name of this.lookup.outputNames) feeds[name] = ids[name];
    if (prepared[0].chars) {
      const L = Math.max(...prepared.flatMap((p) => p.chars.map((w) => w.length)));
      const rows = prepared.flatMap((p) => [...p.chars, ...new Array(T - p.chars.length).fill([])]);
      feeds.chars = int64(rows.flatMap((w) => [...w, ...new Array(L - w.length).fill(0)]), [B, T, L]);
    }
    if (prepared[0].lexicon) {
      const zero = new Array(24).fill(0);
      feeds.lexicon = new ort.Tensor("float32", Float32Array.from(prepared.flatMap((p) =>
        [...p.lexicon, ...new Array(T - p.lexicon.length).fill(zero)].flat())), [B, T, 24]);
    }
    const out = await this.model.run(feeds);
    const row = (tensor, b, n) => Array.from(tensor.data.slice(b * T, b * T + n), Number);
    return sentences.map((s, b) => {
      const tagIds = row(out.tags, b, s.length);
      return { prepared: prepared[b], word_ids: row(ids.word_ids, b, s.length),
               bigram_ids: ids.bigram_ids ? row(ids.bigram_ids, b, s.length) : undefined,
               tag_ids: tagIds, tags: tagIds.map((i) => this.spec.tags[i]), score: out.score.data[b] };
    });
  }
}

// every test vector in one padded batch: ids, caller's steps, tags and score as the numpy engine gave them
async function check(tagger) {
  const vectors = tagger.spec.test_vectors;
  const results = await tagger.tag(vectors.map((v) => v.tokens), vectors[0].features ? vectors.map((v) => v.features) : null);
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  const problems = [];
  vectors.forEach((v, i) => {
    const r = results[i], p = r.prepared;
    for (const key of ["casing", "chars", "lowered", "context_tokens"]) {
      if (v[key] != null && !same(p[key], v[key])) problems.push(`vector ${i + 1}: ${key} ${JSON.stringify(p[key])}`);
    }
    for (const key of ["word_ids", "bigram_ids", "tag_ids", "tags"]) {
      if (v[key] != null && !same(r[key], v[key])) problems.push(`vector ${i + 1}: ${key} ${JSON.stringify(r[key])}`);
    }
    if (v.lexicon && p.lexicon.flat().some((x, k) => Math.abs(x - v.lexicon.flat()[k]) > 1e-6)) {
      problems.push(`vector ${i + 1}: lexicon cells differ`);
    }
    if (Math.abs(r.score - v.score) > 1e-4 * Math.max(1, Math.abs(v.score))) {
      problems.push(`vector ${i + 1}: score ${r.score} instead of ${v.score}`);
    }
  });
  if (problems.length) {
    console.error(problems.join("\n"));
    process.exit(1);
  }
  console.log(JSON.stringify({ reproduced: vectors.length, tokens: vectors.reduce((n, v) => n + v.tokens.length, 0) }));
}

async function main() {
  const [dir, ...rest] = process.argv.slice(2);
  if (!dir) {
    console.error("usage: node tag.mjs EXPORT_DIR [--check | TOKEN...]");
    process.exit(2);
  }
  const tagger = await OnnxTagger.load(dir);
  if (rest[0] === "--check") return check(tagger);
  const sentences = rest.length ? [rest] : readFileSync(0, "utf8").split("\n").map((l) => l.split(/\s+/u).filter(Boolean)).filter((s) => s.length);
  if (!sentences.length) return;
  for (const r of await tagger.tag(sentences)) {
    const entities = tagger.spec.scheme === null ? [] : spans(r.tags).map(([label, start, end]) =>
      ({ label, start, end, text: r.prepared.tokens.slice(start, end).join(" ") }));
    console.log(JSON.stringify({ tokens: r.prepared.tokens, tags: r.tags, entities }));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => { console.error(`error: ${e.message}`); process.exit(1); });
}
