// The explorer's pure helpers, under `node --test` (tests/explorer/test_js.py copies
// explorer.js beside this file as explorer.mjs, so that Node reads it as a module).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  at, curveValues, exitPoint, fitBox, fmt, fmtLr, kernelWords, leaving, ordinal,
  parseSettings, statusText, summaryStatus, visibleArrow, zoomBox,
} from "./explorer.mjs";

const pack = (rows) => ({ shape: [rows.length, 1, 2], data: new Float32Array(rows.flat()) });
const BOX = [[-5, 10], [-5, 10]];

test("numbers are compact: exponents for the large and the small", () => {
  assert.equal(fmt(49710000000000), "4.971e13");
  assert.equal(fmt(4.97e13, 3), "4.97e13");
  assert.equal(fmt(5e13), "5e13");
  assert.equal(fmt(-1.2e-5), "-1.2e-5");
  assert.equal(fmt(67.5712), "67.57");
  assert.equal(fmt(0), "0");
  assert.equal(fmt(null), "—");
  assert.equal(fmt(Infinity), "Infinity");
});

test("a learning rate keeps three significant figures", () => {
  assert.equal(fmtLr(0.021), "0.021");
  assert.equal(fmtLr(10 ** Math.log10(0.0215)), "0.0215");
  assert.equal(fmtLr(0.123456), "0.123");
});

test("ordinals", () => {
  assert.deepEqual([1, 2, 3, 4, 11, 12, 13, 21, 22, 111].map(ordinal),
    ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]);
});

test("schedule settings as typed", () => {
  assert.deepEqual(parseSettings("warmup=5, gamma=0.5"), { warmup: 5, gamma: 0.5 });
  assert.deepEqual(parseSettings("milestones=[30, 60]"), { milestones: [30, 60] });
  assert.deepEqual(parseSettings("milestones=(50,)"), { milestones: [50] });
  assert.deepEqual(parseSettings("mode=triangular"), { mode: "triangular" });
});

test("a walk that left the view is found where it crossed the edge", () => {
  // Rosenbrock's gd from (-0.4, -0.65): one step inside, then out past x = 10
  const path = pack([[-0.4, -0.65], [1.3, 0.55], [341.06, 40.12], [341.06, 40.12]]);
  const left = leaving(path, 0, 3, BOX);
  assert.equal(left.row, 2);
  assert.equal(left.at[0], 10);
  const slope = (40.12 - 0.55) / (341.06 - 1.3);
  assert.ok(Math.abs(left.at[1] - (0.55 + slope * (10 - 1.3))) < 1e-4);
  assert.equal(leaving(pack([[0, 0], [1, 1]]), 0, 1, BOX), null);
  // not finite: the last finite place
  assert.deepEqual(exitPoint([1, 2], [NaN, 3], BOX), [1, 2]);
  // out through a corner region, exactly on the box
  const p = exitPoint([9, 9], [20, 11], BOX);
  assert.equal(p[0], 10);
  assert.ok(p[1] <= 10);
});

test("a row past a walk's end is its last row", () => {
  const path = pack([[0, 1], [2, 3]]);
  assert.deepEqual(at(path, 7, 0), [2, 3]);
});

test("statuses in one vocabulary", () => {
  assert.equal(statusText("converged", 25), "converged at step 25");
  assert.equal(statusText("step limit", 200), "step limit (200)");
  assert.equal(statusText("diverged", 5), "diverged at step 5");
  assert.match(statusText("diverging", 200), /^diverging: f grew ≥1000×/);
  assert.equal(summaryStatus(["step limit", "converged", "converged", "diverged"]), "2 converged, 1 step limit, 1 diverged");
});

test("the curve: f − f* where f* is known, log where it spans decades", () => {
  const known = curveValues([[10, 1, 1e-3], [10, 5, 4]], 0);
  assert.equal(known.label, "f − f*");
  assert.equal(known.log, true);
  const flat = curveValues([[10, 9, 8]], null);
  assert.equal(flat.label, "f");
  assert.equal(flat.log, false);
  const negative = curveValues([[3, -1, -2]], null);
  assert.equal(negative.label, "f − lowest f seen");
  assert.deepEqual(negative.series[0].slice(0, 2), [5, 1]);
  assert.ok(negative.series[0][2] > 0); // (a log axis can draw it)
  // a diverging walk does not lift the others' floor
  const big = curveValues([[1e24, 1e25], [10, 1e-9]], 0);
  assert.equal(big.series[1][1], 1e-9);
});

test("an arrow is at least 10 pixels, in its own direction", () => {
  assert.deepEqual(visibleArrow(3, 4), [6, 8]);
  assert.deepEqual(visibleArrow(30, 40), [30, 40]);
  assert.deepEqual(visibleArrow(0, 0), [0, 0]);
});

test("fit and zoom boxes", () => {
  assert.deepEqual(fitBox([[0, 0], [1, 2], [NaN, 5]]), [-0.16, 1.16, -0.16, 2.16]);
  assert.equal(fitBox([[NaN, NaN]]), null);
  assert.deepEqual(zoomBox([[-5, 5], [-5, 5]], 0, 0, 0.5), [-2.5, 2.5, -2.5, 2.5]);
  assert.deepEqual(zoomBox([[0, 10], [0, 10]], 10, 10, 0.5), [5, 10, 5, 10]);
});

test("engines in words", () => {
  assert.equal(kernelWords(["c", "c", "c", "c"]), "the C loop");
  assert.equal(kernelWords(["c", "eager"]), "the C loop and torch.optim (eager)");
});
