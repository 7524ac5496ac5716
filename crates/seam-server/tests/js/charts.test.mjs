// The dashboard's chart scales (crates/seam-server/assets/js/charts.js), with Node's test runner:
// `node --test crates/seam-server/tests/js/` (scripts/test runs it).

import { test } from "node:test";
import assert from "node:assert/strict";
import { countAxis } from "../../assets/js/charts.js";

const isStep = (s) => {
  const p = Math.pow(10, Math.floor(Math.log10(s)));
  return [1, 2, 5].some((m) => Math.abs(m * p - s) < 1e-9);
};

test("an empty period has whole-number ticks, never fractions of a row", () => {
  const axis = countAxis(0);
  assert.deepEqual(axis.ticks, [0, 1, 2, 3, 4]);
  assert.equal(axis.max, 4);
});

test("a handful of rows gets whole-number ticks", () => {
  for (const top of [0.5, 1, 1.15, 2.3, 3, 7]) {
    const { ticks, max } = countAxis(top);
    assert.ok(max >= top, `max ${max} covers ${top}`);
    for (const t of ticks) assert.ok(Number.isInteger(t), `tick ${t} for ${top}`);
    assert.ok(!ticks.some((t) => String(t).includes(".")), JSON.stringify(ticks));
  }
  assert.deepEqual(countAxis(1.15).ticks, [0, 1, 2]);
});

test("any top: integer ticks from 0 in steps of 1, 2 or 5 × 10^k, two to six of them, covering the top", () => {
  const tops = [];
  for (let k = 0; k < 4000; k++) tops.push(Math.pow(10, (k / 4000) * 10) * (1 + (k % 7) / 10));
  tops.push(1, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 5e6, 123456789);
  for (const top of tops) {
    const { ticks, max } = countAxis(top);
    assert.equal(ticks[0], 0);
    assert.equal(ticks[ticks.length - 1], max);
    assert.ok(max >= top, `max ${max} < top ${top}`);
    assert.ok(ticks.length >= 2 && ticks.length <= 6, `${ticks.length} ticks for ${top}: ${ticks}`);
    const step = ticks[1] - ticks[0];
    assert.ok(Number.isInteger(step) && step >= 1 && isStep(step), `step ${step} for ${top}`);
    for (let i = 1; i < ticks.length; i++) {
      assert.ok(Number.isInteger(ticks[i]), `tick ${ticks[i]} for ${top}`);
      assert.equal(ticks[i] - ticks[i - 1], step);
    }
    assert.ok(max - step < top, `no empty band above ${top}: ${ticks}`);
  }
});

test("bad input reads as empty", () => {
  for (const bad of [NaN, -5, undefined, null, "x"]) assert.deepEqual(countAxis(bad).ticks, [0, 1, 2, 3, 4]);
});
