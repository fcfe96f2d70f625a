//! Training methods and their losses: plain quantization-aware training, logit and feature distillation,
//! and Quantized Feature Distillation (Zhu et al.), each `CE + lambda * distillation`; block-wise
//! replacement training adds the losses of mixed paths to those ([`super::bwrf`]).

use std::fmt;
use std::str::FromStr;

use tch::{Kind, Tensor};

use super::models::NetOutput;

/// How a model is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Full precision, cross-entropy only.
    Fp,
    /// Quantization-aware training without distillation (the paper's baseline).
    Qat,
    /// KL divergence to the full-precision teacher's softened logits.
    LogitKd,
    /// MSE to the full-precision teacher's pooled feature.
    FeatureKd,
    /// MSE to the pooled feature of a teacher whose feature is quantized.
    Qfd,
    /// Block-wise replacement (Yu et al.): cross-entropy plus the losses of paths that mix the quantized
    /// network's blocks into its frozen full-precision partner ([`super::bwrf`]).
    Bwrf,
    /// [`Method::Bwrf`] with the QFD distillation term beside the task loss.
    BwrfQfd,
    /// Post-training quantization of a full-precision model (`qfd-host quantize`): calibrated, not
    /// trained.
    Ptq,
}

impl Method {
    /// Every method, in the order of the paper's tables.
    pub const ALL: [Method; 7] = [
        Method::Fp,
        Method::Qat,
        Method::LogitKd,
        Method::FeatureKd,
        Method::Qfd,
        Method::Bwrf,
        Method::BwrfQfd,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Fp => "fp",
            Method::Qat => "qat",
            Method::LogitKd => "logit-kd",
            Method::FeatureKd => "feature-kd",
            Method::Qfd => "qfd",
            Method::Bwrf => "bwrf",
            Method::BwrfQfd => "bwrf-qfd",
            Method::Ptq => "ptq",
        }
    }

    /// Whether the student is quantized.
    pub fn quantized(self) -> bool {
        self != Method::Fp
    }

    /// Whether training needs a teacher.
    pub fn needs_teacher(self) -> bool {
        matches!(self, Method::LogitKd | Method::FeatureKd | Method::Qfd | Method::BwrfQfd)
    }

    /// Whether training runs mixed paths through the frozen full-precision model (block-wise replacement).
    pub fn needs_partner(self) -> bool {
        matches!(self, Method::Bwrf | Method::BwrfQfd)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // `ptq` names what `qfd-host quantize` writes; it is not a training method.
        Method::ALL.into_iter().chain([Method::Ptq]).find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
            format!("unknown method '{s}' (expected one of: {})", names.join(", "))
        })
    }
}

/// The loss of one batch, split into its terms.
#[derive(Debug)]
pub struct Loss {
    /// `task + lambda * distill`, to minimise.
    pub total: Tensor,
    /// Cross-entropy.
    pub task: Tensor,
    /// The distillation term, for methods that have one.
    pub distill: Option<Tensor>,
}

/// The loss of `method` for a student output, the labels and (for distillation) the teacher's output.
pub fn loss(
    method: Method,
    student: &NetOutput,
    teacher: Option<&NetOutput>,
    labels: &Tensor,
    lambda: f64,
    temperature: f64,
) -> Loss {
    let task = student.logits.cross_entropy_for_logits(labels);
    let distill = match (method, teacher) {
        (Method::LogitKd, Some(t)) => Some(kl_soft(&student.logits, &t.logits, temperature)),
        (Method::FeatureKd | Method::Qfd | Method::BwrfQfd, Some(t)) => {
            Some(student.feature.mse_loss(&t.feature.detach(), tch::Reduction::Mean))
        }
        _ => None,
    };
    let total = match &distill {
        Some(d) => &task + d * lambda,
        None => task.shallow_clone(),
    };
    Loss { total, task, distill }
}

/// `T^2 * KL(softmax(teacher / T) || softmax(student / T))`, averaged over the batch (Hinton et al.).
pub fn kl_soft(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let log_p_student = (student / t).log_softmax(1, Kind::Float);
    let log_p_teacher = (teacher.detach() / t).log_softmax(1, Kind::Float);
    let kl = (log_p_teacher.exp() * (&log_p_teacher - log_p_student)).sum_dim_intlist(1, false, Kind::Float);
    kl.mean(Kind::Float) * (t * t)
}
