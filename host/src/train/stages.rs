//! The stages of a training run: which models a method needs (full-precision model, feature-quantized
//! teacher, student), in which run directories, with which options.

use std::path::PathBuf;

use super::config::TrainConfig;
use super::method::Method;
/// One model to train.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `fp`, `teacher` or `student`.
    pub name: &'static str,
    /// Its options (method and run directory set for the stage).
    pub config: TrainConfig,
    /// Bits of the pooled-feature quantizer (the QFD teacher).
    pub feature_bits: Option<u8>,
    /// Checkpoint to start from (the full-precision model).
    pub init_from: Option<PathBuf>,
    /// Checkpoint of the teacher to distil from.
    pub teacher: Option<PathBuf>,
    /// Checkpoint of the frozen full-precision partner of block-wise replacement training.
    pub partner: Option<PathBuf>,
}

/// The stages `config` needs, in order. Stages shared between methods (the full-precision model, the QFD
/// teacher) live in sibling run directories named by what they are, so other runs reuse them.
pub fn plan_stages(config: &TrainConfig) -> Vec<Stage> {
    let defaults = TrainConfig::default();
    let sibling = |cfg: &TrainConfig, suffix: &str| match &config.run_dir {
        Some(dir) => dir.join(suffix),
        None => PathBuf::from(format!("{}{}", cfg.run_dir().display(), suffix.trim_start_matches("fp"))),
    };
    // The full-precision model does not depend on the quantization options: keep them at their defaults so
    // every method and bit-width shares one.
    let fp = TrainConfig {
        method: Method::Fp,
        lr: config.fp_lr.or(if config.method == Method::Fp { config.lr } else { None }),
        epochs: config.fp_epochs.unwrap_or(config.epochs),
        fp_lr: None,
        fp_epochs: None,
        wbits: defaults.wbits,
        abits: defaults.abits,
        teacher_feature_bits: defaults.teacher_feature_bits,
        lambda: defaults.lambda,
        temperature: defaults.temperature,
        ewgs: defaults.ewgs,
        ewgs_delta: defaults.ewgs_delta,
        quant_lr: None,
        fp_first_last: defaults.fp_first_last,
        bwrf_mode: defaults.bwrf_mode,
        bwrf_path_loss: defaults.bwrf_path_loss,
        bwrf_paths: defaults.bwrf_paths,
        bwrf_weight: defaults.bwrf_weight,
        teacher: None,
        run_dir: None,
        ..config.clone()
    };
    let fp_dir = config.fp_run.clone().unwrap_or_else(|| sibling(&fp, "fp"));
    let fp_stage = Stage {
        name: "fp",
        config: TrainConfig { run_dir: Some(fp_dir.clone()), ..fp.clone() },
        feature_bits: None,
        init_from: None,
        teacher: None,
        partner: None,
    };
    // The teacher and the student fine-tune the full-precision model.
    let finetune = TrainConfig {
        lr: Some(config.finetune_lr()),
        fp_lr: None,
        fp_epochs: None,
        fp_run: None,
        init: None,
        ..config.clone()
    };
    // A vision transformer's student keeps the quantizers post-training quantization set: its attention
    // products need whole zero points, which learned bounds would move.
    let student_config = match config.arch.as_str() {
        "vit" => TrainConfig { quant_lr: Some(0.0), ..finetune.clone() },
        _ => finetune.clone(),
    };
    // Block-wise replacement mixes the student's blocks into the full-precision model it starts from.
    let partner = config.method.needs_partner().then(|| fp_dir.clone());
    let student = |teacher: Option<PathBuf>| Stage {
        name: "student",
        config: student_config.clone(),
        feature_bits: None,
        init_from: Some(config.init.clone().unwrap_or_else(|| fp_dir.clone())),
        teacher,
        partner: partner.clone(),
    };
    let mut stages = match config.method {
        // Trained alone, the full-precision model is the same stage, in the run directory asked for.
        Method::Fp => {
            vec![Stage { config: TrainConfig { run_dir: Some(config.run_dir()), ..fp }, ..fp_stage }]
        }
        // Post-training quantization starts from the full-precision model too (the configuration
        // refuses training one; `qfd-host quantize` makes it).
        Method::Qat | Method::Bwrf | Method::Ptq => vec![fp_stage, student(None)],
        Method::LogitKd | Method::FeatureKd => match &config.teacher {
            Some(t) => vec![fp_stage, student(Some(t.clone()))],
            None => vec![fp_stage, student(Some(fp_dir.clone()))],
        },
        Method::Qfd | Method::BwrfQfd => {
            if let Some(t) = &config.teacher {
                vec![fp_stage, student(Some(t.clone()))]
            } else {
                let bits = config.teacher_feature_bits;
                let teacher_dir = match &config.run_dir {
                    Some(dir) => dir.join(format!("teacher-f{bits}")),
                    None => PathBuf::from(format!("{}-teacher-f{bits}", fp_dir.display())),
                };
                let teacher = Stage {
                    name: "teacher",
                    config: TrainConfig {
                        teacher_feature_bits: bits,
                        run_dir: Some(teacher_dir.clone()),
                        lr: finetune.lr,
                        epochs: config.epochs,
                        ..fp.clone()
                    },
                    feature_bits: Some(bits),
                    init_from: Some(fp_dir.clone()),
                    teacher: None,
                    partner: None,
                };
                vec![fp_stage, teacher, student(Some(teacher_dir))]
            }
        }
    };
    // A full-precision run given, or one nothing reads (the student starts elsewhere and no stage
    // distils from it or pairs with it), is not trained.
    let fp_read = stages.iter().any(|s| {
        s.name != "fp"
            && (s.init_from.as_ref() == Some(&fp_dir)
                || s.teacher.as_ref() == Some(&fp_dir)
                || s.partner.as_ref() == Some(&fp_dir))
    });
    if config.method != Method::Fp && (config.fp_run.is_some() || !fp_read) {
        stages.retain(|s| s.name != "fp");
    }
    stages
}

/// [`plan_stages`], with the stages other runs can reuse (the full-precision model, the QFD teachers) moved
/// into `shared`: `shared/fp` and `shared/teacher-f<bits>`. A study gives every student of one architecture
/// and seed the same `shared` directory, so each of those models is trained once.
pub fn plan_stages_shared(config: &TrainConfig, shared: &std::path::Path) -> Vec<Stage> {
    let mut stages = plan_stages(config);
    let moved: Vec<(PathBuf, PathBuf)> = stages
        .iter()
        .filter_map(|s| match (s.name, s.feature_bits) {
            ("fp", _) => Some((s.config.run_dir(), shared.join("fp"))),
            ("teacher", Some(bits)) => Some((s.config.run_dir(), shared.join(format!("teacher-f{bits}")))),
            _ => None,
        })
        .collect();
    let relocate = |path: &mut PathBuf| {
        if let Some((_, to)) = moved.iter().find(|(from, _)| from == path) {
            *path = to.clone();
        }
    };
    for stage in &mut stages {
        if stage.name != "student" {
            let mut dir = stage.config.run_dir();
            relocate(&mut dir);
            stage.config.run_dir = Some(dir);
        }
        stage.init_from.as_mut().map(relocate);
        stage.teacher.as_mut().map(relocate);
        stage.partner.as_mut().map(relocate);
    }
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(method: Method) -> Vec<Stage> {
        plan_stages(&TrainConfig {
            method,
            arch: "resnet8".into(),
            fp_epochs: Some(7),
            ..TrainConfig::default()
        })
    }

    #[test]
    fn every_method_shares_one_full_precision_stage() {
        let fp_alone = plan(Method::Fp);
        assert_eq!(fp_alone.len(), 1);
        for method in Method::ALL {
            let stages = plan(method);
            assert_eq!(stages[0].name, "fp");
            assert_eq!(stages[0].config, fp_alone[0].config, "{method}");
            assert_eq!(stages[0].config.epochs, 7, "--fp-epochs sets the full-precision stage's epochs");
            assert_eq!(stages[0].config.lr(), 0.05, "the full-precision stage trains at the default rate");
        }
    }

    #[test]
    fn students_and_the_teacher_fine_tune_the_full_precision_model_at_a_lower_rate() {
        let stages = plan(Method::Qfd);
        let names: Vec<_> = stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["fp", "teacher", "student"]);
        let fp_dir = stages[0].config.run_dir();
        for stage in &stages[1..] {
            assert_eq!(stage.init_from.as_ref(), Some(&fp_dir));
            assert_eq!(stage.config.lr(), 0.05 * crate::train::config::FINETUNE_LR_FACTOR);
            assert_eq!(stage.config.epochs, TrainConfig::default().epochs);
        }
        assert_eq!(stages[1].feature_bits, Some(4));
        assert_eq!(stages[2].teacher.as_ref(), Some(&stages[1].config.run_dir()));
        assert_eq!(stages[2].config.run_dir(), PathBuf::from("runs/fashion-mnist-resnet8-qfd-w4a4"));
    }

    #[test]
    fn a_student_started_elsewhere_trains_no_full_precision_model_it_does_not_read() {
        let vit = |method| TrainConfig {
            method,
            arch: "vit".into(),
            init: Some("runs/vit/ptq".into()),
            run_dir: Some("out".into()),
            ..TrainConfig::default()
        };
        let qat = plan_stages(&vit(Method::Qat));
        assert_eq!(qat.iter().map(|s| s.name).collect::<Vec<_>>(), ["student"]);
        assert_eq!(qat[0].init_from.as_deref(), Some(Path::new("runs/vit/ptq")));
        assert_eq!(qat[0].config.quant_lr(), 0.0, "a vit student keeps its post-training quantizers");
        assert_eq!(qat[0].config.init, None, "the stage's own config starts from its init_from");
        // QFD's teacher still fine-tunes the full-precision model: trained here, or the one given.
        let qfd = plan_stages(&vit(Method::Qfd));
        assert_eq!(qfd.iter().map(|s| s.name).collect::<Vec<_>>(), ["fp", "teacher", "student"]);
        let given = plan_stages(&TrainConfig { fp_run: Some("runs/vit/fp".into()), ..vit(Method::Qfd) });
        assert_eq!(given.iter().map(|s| s.name).collect::<Vec<_>>(), ["teacher", "student"]);
        assert_eq!(given[0].init_from.as_deref(), Some(Path::new("runs/vit/fp")));
        assert_eq!(given[1].init_from.as_deref(), Some(Path::new("runs/vit/ptq")));
        // A CNN student keeps learning its quantizers.
        let cnn = plan_stages(&TrainConfig { arch: "resnet8".into(), ..vit(Method::Qat) });
        assert!(cnn[0].config.quant_lr() > 0.0);
    }

    #[test]
    fn block_replacement_students_run_beside_the_full_precision_model() {
        for (method, names) in
            [(Method::Bwrf, &["fp", "student"][..]), (Method::BwrfQfd, &["fp", "teacher", "student"])]
        {
            let stages = plan(method);
            assert_eq!(stages.iter().map(|s| s.name).collect::<Vec<_>>(), names, "{method}");
            let fp_dir = stages[0].config.run_dir();
            let student = stages.last().unwrap();
            assert_eq!(student.partner.as_ref(), Some(&fp_dir), "{method}");
            assert_eq!(student.init_from.as_ref(), Some(&fp_dir), "{method}");
            assert!(stages[..stages.len() - 1].iter().all(|s| s.partner.is_none()));
        }
        assert_eq!(
            plan(Method::BwrfQfd)[2].teacher.as_ref(),
            Some(&plan(Method::BwrfQfd)[1].config.run_dir())
        );
        assert!(plan(Method::Qfd).iter().all(|s| s.partner.is_none()));
    }

    #[test]
    fn a_given_learning_rate_applies_to_the_final_stage_only() {
        let cfg = TrainConfig { method: Method::Qat, lr: Some(0.003), ..TrainConfig::default() };
        let stages = plan_stages(&cfg);
        assert_eq!(stages[0].config.lr(), 0.05);
        assert_eq!(stages[1].config.lr(), 0.003);
        let fp = plan_stages(&TrainConfig { method: Method::Fp, lr: Some(0.003), ..TrainConfig::default() });
        assert_eq!(fp[0].config.lr(), 0.003);
    }

    #[test]
    fn a_given_run_directory_holds_the_shared_stages_inside_it() {
        let cfg = TrainConfig { method: Method::Qfd, run_dir: Some("out".into()), ..TrainConfig::default() };
        let dirs: Vec<_> = plan_stages(&cfg).iter().map(|s| s.config.run_dir()).collect();
        assert_eq!(dirs, [PathBuf::from("out/fp"), PathBuf::from("out/teacher-f4"), PathBuf::from("out")]);
    }

    #[test]
    fn shared_stages_move_to_the_shared_directory_and_students_point_there() {
        let shared = PathBuf::from("study/seed0/shared");
        let cfg = TrainConfig {
            method: Method::Qfd,
            teacher_feature_bits: 8,
            run_dir: Some("study/seed0/qfd-f8-w2a2".into()),
            ..TrainConfig::default()
        };
        let stages = plan_stages_shared(&cfg, &shared);
        let dirs: Vec<_> = stages.iter().map(|s| s.config.run_dir()).collect();
        assert_eq!(
            dirs,
            [shared.join("fp"), shared.join("teacher-f8"), PathBuf::from("study/seed0/qfd-f8-w2a2")]
        );
        assert_eq!(stages[1].init_from.as_ref(), Some(&shared.join("fp")));
        assert_eq!(stages[2].init_from.as_ref(), Some(&shared.join("fp")));
        assert_eq!(stages[2].teacher.as_ref(), Some(&shared.join("teacher-f8")));
        // Plain distillation's teacher is the shared full-precision model; fp alone is that model.
        let kd = plan_stages_shared(&TrainConfig { method: Method::LogitKd, ..cfg.clone() }, &shared);
        assert_eq!(kd[1].teacher.as_ref(), Some(&shared.join("fp")));
        let bwrf = plan_stages_shared(&TrainConfig { method: Method::Bwrf, ..cfg.clone() }, &shared);
        assert_eq!(bwrf[1].partner.as_ref(), Some(&shared.join("fp")));
        let fp = plan_stages_shared(&TrainConfig { method: Method::Fp, ..cfg }, &shared);
        assert_eq!(fp.len(), 1);
        assert_eq!(fp[0].config.run_dir(), shared.join("fp"));
        assert_eq!(fp[0].config, TrainConfig { run_dir: Some(shared.join("fp")), ..kd[0].config.clone() });
    }
}
