//! EWGS gradient scaling (Lee et al., "Network Quantization with Element-wise Gradient Scaling", CVPR 2021).
//!
//! The straight-through estimator passes the gradient `g` of a rounded value unchanged to the value before
//! rounding. EWGS scales it element by element, `g * (1 + delta * sign(g) * (x - round(x)))`, so that an
//! element's update depends on where it sits between two levels. We measure `x - round(x)` in code units
//! (within `[-1/2, 1/2]`) and keep `delta` fixed (`--ewgs-delta`), where the paper re-estimates it each
//! epoch from the Hessian.
//!
//! `tch` has no custom autograd functions, so the scaling is done by cutting the graph at each rounding: a
//! training forward pass with a [`GradTape`] installed replaces every `round(x)` by a fresh leaf holding the
//! rounded values and records `(x, leaf)`. [`GradTape::backward`] back-propagates the loss down to the
//! leaves, then, from the last cut to the first (so that a leaf's gradient is complete when it is read),
//! sends each scaled leaf gradient on through the graph of its `x`.

use std::cell::RefCell;
use std::rc::Rc;

use tch::{Kind, TchError, Tensor};

/// The roundings of one training forward pass, for the scaled backward pass.
#[derive(Debug)]
pub struct GradTape {
    delta: f64,
    cuts: RefCell<Vec<Cut>>,
}

/// One rounding: the value before it (with its graph) and the leaf that stands for its result.
#[derive(Debug)]
struct Cut {
    before: Tensor,
    rounded: Tensor,
}

thread_local! {
    /// The tape of the training forward pass running on this thread, if any.
    static ACTIVE: RefCell<Option<Rc<GradTape>>> = const { RefCell::new(None) };
}

impl GradTape {
    /// A tape scaling with `delta`.
    pub fn new(delta: f64) -> Rc<GradTape> {
        Rc::new(GradTape { delta, cuts: RefCell::new(Vec::new()) })
    }

    /// Runs `forward` with this tape recording its roundings, after dropping those of an earlier pass.
    pub fn record<T>(self: &Rc<Self>, forward: impl FnOnce() -> T) -> T {
        self.cuts.borrow_mut().clear();
        let previous = ACTIVE.with(|a| a.replace(Some(Rc::clone(self))));
        let out = forward();
        ACTIVE.with(|a| *a.borrow_mut() = previous);
        out
    }

    /// Back-propagates `loss` with EWGS-scaled gradients at every recorded rounding.
    pub fn backward(&self, loss: &Tensor) -> Result<(), TchError> {
        let cuts = std::mem::take(&mut *self.cuts.borrow_mut());
        loss.f_backward()?;
        for cut in cuts.iter().rev() {
            let g = cut.rounded.grad();
            if !g.defined() {
                continue; // the rounded value did not reach the loss
            }
            let scaled = tch::no_grad(|| {
                let offset = &cut.before.detach() - &cut.rounded.detach();
                &g * (g.sign() * offset * self.delta + 1.0)
            });
            (&cut.before * scaled).sum(Kind::Float).f_backward()?;
        }
        Ok(())
    }
}

/// Rounds with a straight-through gradient: forward `round(x)`; backward the identity, or EWGS's scaled
/// gradient when a [`GradTape`] is recording and `x` has a graph.
pub fn round_ste(x: &Tensor) -> Tensor {
    if x.requires_grad() {
        if let Some(tape) = ACTIVE.with(|a| a.borrow().clone()) {
            let rounded = x.detach().round().set_requires_grad(true);
            tape.cuts.borrow_mut().push(Cut { before: x.shallow_clone(), rounded: rounded.shallow_clone() });
            return rounded;
        }
    }
    x + (x.round() - x).detach()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sum(w_i * round(k * x_i))`, whose straight-through gradient in `x_i` is `k * w_i`.
    fn loss(x: &Tensor, w: &Tensor, k: f64) -> Tensor {
        (round_ste(&(x * k)) * w).sum(Kind::Float)
    }

    #[test]
    fn without_a_tape_the_gradient_passes_straight_through() {
        let x = Tensor::from_slice(&[0.2f32, 0.7, 1.4]).set_requires_grad(true);
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0]);
        loss(&x, &w, 2.0).backward();
        assert_eq!(Vec::<f32>::try_from(x.grad()).unwrap(), [2.0, -4.0, 6.0]);
    }

    #[test]
    fn with_a_tape_each_gradient_is_scaled_by_its_distance_to_the_rounded_value() {
        let (k, delta) = (2.0f32, 0.5f32);
        let xs = [0.2f32, 0.7, 1.4];
        let ws = [1.0f32, -2.0, 3.0];
        let x = Tensor::from_slice(&xs).set_requires_grad(true);
        let w = Tensor::from_slice(&ws);
        let tape = GradTape::new(delta as f64);
        let l = tape.record(|| loss(&x, &w, k as f64));
        tape.backward(&l).unwrap();
        let got = Vec::<f32>::try_from(x.grad()).unwrap();
        for i in 0..3 {
            let v = xs[i] * k;
            let g = ws[i];
            let expected = k * g * (1.0 + delta * g.signum() * (v - v.round()));
            assert!((got[i] - expected).abs() < 1e-6, "element {i}: {} vs {expected}", got[i]);
        }
        // The tape is no longer active: a plain pass is straight-through again.
        let y = Tensor::from_slice(&xs).set_requires_grad(true);
        loss(&y, &w, k as f64).backward();
        assert_eq!(Vec::<f32>::try_from(y.grad()).unwrap(), [2.0, -4.0, 6.0]);
    }

    #[test]
    fn chained_roundings_scale_in_turn() {
        // y = round(3 * round(2 * x)); with delta the gradient is 2 * s1 * 3 * s2.
        let delta = 0.4f32;
        let x = Tensor::from_slice(&[0.3f32]).set_requires_grad(true);
        let tape = GradTape::new(delta as f64);
        let l = tape.record(|| round_ste(&(round_ste(&(&x * 2.0)) * 3.0)).sum(Kind::Float));
        tape.backward(&l).unwrap();
        // Inner: 0.6 rounds to 1 (offset -0.4); outer: 3 rounds to 3 (offset 0). Upstream gradients are
        // positive, so s2 = 1 and s1 = 1 + delta * (-0.4).
        let expected = 2.0 * (1.0 - delta * 0.4) * 3.0;
        let got = Vec::<f32>::try_from(x.grad()).unwrap()[0];
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }
}
