//! SGD with momentum and Adam over the trainable variables of a `VarStore`, with their state exportable so
//! that a resumed run continues exactly where the interrupted one stopped.
//!
//! `tch`'s built-in optimisers keep their momentum and Adam buffers inside libtorch and cannot export them;
//! resuming with fresh buffers changes every later step. This one keeps the buffers as ordinary tensors,
//! named after their variable (`<var>.momentum`, `<var>.exp_avg`, `<var>.exp_avg_sq`, plus [`STEP_KEY`]),
//! which [`super::checkpoint::Checkpoint::save`] writes as extra tensors.
//!
//! The updates follow PyTorch's (`torch.optim.SGD` with `dampening = 0`, `torch.optim.Adam` with L2 weight
//! decay added to the gradient, not AdamW). Each variable belongs to the parameter group it was created in
//! (`Path::set_group`): group 0 for weights and BatchNorm, [`super::quant::QUANT_GROUP`] for quantizer
//! parameters; every group has its own learning rate and weight decay.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{TchError, Tensor};

use super::config::{OptimizerKind, TrainConfig};
use super::quant::QUANT_GROUP;

/// Name of the step-count tensor in [`Optimizer::state`].
pub const STEP_KEY: &str = "optimizer.step";

/// Adam's coefficients (PyTorch's defaults).
const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
const ADAM_EPS: f64 = 1e-8;

/// Why saved optimiser state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A buffer is missing, has another shape, or is not a tensor of the variable's kind.
    #[error("optimizer state: {0}")]
    BadState(String),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

/// Learning rate and weight decay of one parameter group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    /// Learning rate.
    pub lr: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// SGD with momentum (no dampening).
    Sgd {
        /// Momentum factor; 0 for plain SGD.
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam with bias correction.
    Adam {
        /// `(beta1, beta2)`.
        betas: (f64, f64),
        /// Added to the denominator.
        eps: f64,
        /// Decoupled weight decay (AdamW): the weights shrink by `lr * weight_decay` each step instead of
        /// the decay joining the gradient.
        decoupled: bool,
    },
}

struct Param {
    name: String,
    tensor: Tensor,
    group: usize,
    /// SGD: the momentum buffer; Adam: `exp_avg`.
    first: Option<Tensor>,
    /// Adam: `exp_avg_sq`.
    second: Option<Tensor>,
}

/// An optimiser over the trainable variables of one `VarStore`.
pub struct Optimizer {
    rule: Rule,
    groups: Vec<Group>,
    params: Vec<Param>,
    step: i64,
}

impl Optimizer {
    /// An optimiser over every trainable variable of `vs`, in its parameter group; every group starts with
    /// learning rate `lr` and weight decay `weight_decay`.
    pub fn new(vs: &VarStore, rule: Rule, lr: f64, weight_decay: f64) -> Optimizer {
        let params = named_trainable(vs)
            .into_iter()
            .map(|(name, tensor, group)| Param { name, tensor, group, first: None, second: None })
            .collect::<Vec<_>>();
        let n_groups = params.iter().map(|p| p.group + 1).max().unwrap_or(1).max(QUANT_GROUP + 1);
        Optimizer { rule, groups: vec![Group { lr, weight_decay }; n_groups], params, step: 0 }
    }

    /// The optimiser `cfg` asks for: its learning rate and weight decay for group 0, and no weight decay for
    /// the quantizer parameters (it would pull bounds and scales towards zero).
    pub fn from_config(cfg: &TrainConfig, vs: &VarStore) -> Optimizer {
        let rule = match cfg.optimizer {
            OptimizerKind::Sgd => Rule::Sgd { momentum: cfg.momentum, nesterov: cfg.nesterov },
            OptimizerKind::Adam => Rule::Adam { betas: ADAM_BETAS, eps: ADAM_EPS, decoupled: false },
            OptimizerKind::Adamw => Rule::Adam { betas: ADAM_BETAS, eps: ADAM_EPS, decoupled: true },
        };
        let mut opt = Optimizer::new(vs, rule, cfg.lr() * cfg.lr_factor(), cfg.weight_decay);
        opt.set_lr_group(QUANT_GROUP, cfg.quant_lr() * cfg.lr_factor());
        opt.set_weight_decay_group(QUANT_GROUP, 0.0);
        opt
    }

    /// Sets the learning rate of every group.
    pub fn set_lr(&mut self, lr: f64) {
        self.groups.iter_mut().for_each(|g| g.lr = lr);
    }

    /// Sets the learning rate of `group`.
    pub fn set_lr_group(&mut self, group: usize, lr: f64) {
        self.group_mut(group).lr = lr;
    }

    /// Sets the weight decay of `group`.
    pub fn set_weight_decay_group(&mut self, group: usize, weight_decay: f64) {
        self.group_mut(group).weight_decay = weight_decay;
    }

    fn group_mut(&mut self, group: usize) -> &mut Group {
        if self.groups.len() <= group {
            let last = *self.groups.last().expect("at least one group");
            self.groups.resize(group + 1, last);
        }
        &mut self.groups[group]
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Names of the variables optimised, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }

    /// Clears the gradients of every variable.
    pub fn zero_grad(&mut self) {
        for p in &self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// Clears the gradients, back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<(), TchError> {
        self.zero_grad();
        loss.f_backward()?;
        self.step()
    }

    /// One update of every variable that has a gradient, from the gradients already computed.
    pub fn step(&mut self) -> Result<(), TchError> {
        self.step += 1;
        let step = self.step;
        let (rule, groups) = (self.rule, &self.groups);
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                let Group { lr, weight_decay } = groups[p.group];
                let decoupled = matches!(rule, Rule::Adam { decoupled: true, .. });
                if decoupled && weight_decay != 0.0 {
                    let _ = p.tensor.f_mul_scalar_(1.0 - lr * weight_decay)?;
                }
                let mut d_p = if weight_decay != 0.0 && !decoupled {
                    grad.f_add(&p.tensor.f_mul_scalar(weight_decay)?)?
                } else {
                    grad.f_detach_copy()?
                };
                match rule {
                    Rule::Sgd { momentum, nesterov } => {
                        if momentum != 0.0 {
                            let buf = match p.first.take() {
                                None => d_p.f_detach_copy()?,
                                Some(mut buf) => {
                                    let _ = buf.f_mul_scalar_(momentum)?.f_add_(&d_p)?;
                                    buf
                                }
                            };
                            d_p =
                                if nesterov { d_p.f_add(&buf.f_mul_scalar(momentum)?)? } else { buf.copy() };
                            p.first = Some(buf);
                        }
                        let _ = p.tensor.f_sub_(&d_p.f_mul_scalar(lr)?)?;
                    }
                    Rule::Adam { betas: (beta1, beta2), eps, .. } => {
                        let mut m = match p.first.take() {
                            Some(m) => m,
                            None => p.tensor.f_zeros_like()?,
                        };
                        let mut v = match p.second.take() {
                            Some(v) => v,
                            None => p.tensor.f_zeros_like()?,
                        };
                        let _ = m.f_mul_scalar_(beta1)?.f_add_(&d_p.f_mul_scalar(1.0 - beta1)?)?;
                        let _ =
                            v.f_mul_scalar_(beta2)?.f_add_(&d_p.f_mul(&d_p)?.f_mul_scalar(1.0 - beta2)?)?;
                        let bias1 = 1.0 - beta1.powi(step as i32);
                        let bias2_sqrt = (1.0 - beta2.powi(step as i32)).sqrt();
                        let denom = v.f_sqrt()?.f_div_scalar(bias2_sqrt)?.f_add_scalar(eps)?;
                        let _ = p.tensor.f_sub_(&m.f_div(&denom)?.f_mul_scalar(lr / bias1)?)?;
                        p.first = Some(m);
                        p.second = Some(v);
                    }
                }
            }
            Ok(())
        })
    }

    fn buffer_names(&self) -> (&'static str, Option<&'static str>) {
        match self.rule {
            Rule::Sgd { .. } => ("momentum", None),
            Rule::Adam { .. } => ("exp_avg", Some("exp_avg_sq")),
        }
    }

    /// The buffers, named `<var>.momentum` (SGD) or `<var>.exp_avg` and `<var>.exp_avg_sq` (Adam), and the
    /// step count as [`STEP_KEY`] (an `Int64` scalar). Buffers are shallow clones: save them before the next
    /// step.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let (first, second) = self.buffer_names();
        let mut out = vec![(STEP_KEY.to_string(), Tensor::from(self.step))];
        for p in &self.params {
            if let Some(t) = &p.first {
                out.push((format!("{}.{first}", p.name), t.shallow_clone()));
            }
            if let (Some(t), Some(n)) = (&p.second, second) {
                out.push((format!("{}.{n}", p.name), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`Optimizer::state`] returned (e.g. a checkpoint's extra tensors), copying the buffers
    /// to the variables' device. Fails if the step count is missing while buffers are expected, or a buffer
    /// has another shape than its variable.
    pub fn load_state(&mut self, extra: &HashMap<String, Tensor>) -> Result<(), OptimError> {
        let step = match extra.get(STEP_KEY) {
            Some(t) => i64::try_from(t)?,
            None => return Err(OptimError::BadState(format!("{STEP_KEY} is missing"))),
        };
        let (first, second) = self.buffer_names();
        let momentum_used = !matches!(self.rule, Rule::Sgd { momentum, .. } if momentum == 0.0);
        for p in &mut self.params {
            let fetch = |suffix: &str| -> Result<Option<Tensor>, OptimError> {
                let key = format!("{}.{suffix}", p.name);
                match extra.get(&key) {
                    // A variable without a gradient so far has no buffer yet; that is not an error.
                    None => Ok(None),
                    Some(t) if t.size() != p.tensor.size() => Err(OptimError::BadState(format!(
                        "{key} is {:?}, the variable is {:?}",
                        t.size(),
                        p.tensor.size()
                    ))),
                    Some(t) => Ok(Some(t.f_to_device(p.tensor.device())?.f_to_kind(p.tensor.kind())?.copy())),
                }
            };
            p.first = if momentum_used { fetch(first)? } else { None };
            p.second = match second {
                Some(s) => fetch(s)?,
                None => None,
            };
        }
        if step > 0
            && momentum_used
            && self.params.iter().all(|p| p.first.is_none())
            && !self.params.is_empty()
        {
            return Err(OptimError::BadState(format!(
                "{step} steps taken but no {first} buffer saved (a checkpoint of an older version?)"
            )));
        }
        self.step = step;
        Ok(())
    }
}

/// Every trainable variable of `vs` with its name and parameter group, sorted by name.
///
/// `tch` records the group of a trainable variable (`Var::group`) but not its name, and the names of all
/// variables but not their groups; the two are joined through the tensors' storage (a variable is its own
/// storage).
fn named_trainable(vs: &VarStore) -> Vec<(String, Tensor, usize)> {
    let vars = vs.variables_.lock().unwrap_or_else(|e| e.into_inner());
    let groups: HashMap<usize, usize> =
        vars.trainable_variables.iter().map(|v| (v.tensor.data_ptr() as usize, v.group)).collect();
    let mut out: Vec<(String, Tensor, usize)> = vars
        .named_variables
        .iter()
        .filter_map(|(name, t)| {
            groups.get(&(t.data_ptr() as usize)).map(|&g| (name.clone(), t.shallow_clone(), g))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    debug_assert_eq!(out.len(), vars.trainable_variables.len(), "every trainable variable has a name");
    out
}
