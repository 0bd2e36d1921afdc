//! API and error-path tests of the Rust binding (CPU backend).
mod common;

use common::*;
use moe_trtllm::*;

fn p() -> Problem {
    Problem::new(8, 5, 2, 64, 32)
}

struct Setup {
    logits: Vec<f32>,
    hidden: Vec<u16>,
    w1: AlignedBuffer,
    w2: AlignedBuffer,
}

fn setup(r: &Runner) -> Setup {
    let p = p();
    let w1c = gen_bf16(7, 4, 8, 8 * 64 * 64);
    let w2c = gen_bf16(7, 5, 8, 8 * 64 * 32);
    Setup {
        logits: gen_f32(7, 1, 21, 5 * 8),
        hidden: gen_bf16(7, 3, 6, 5 * 64),
        w1: r
            .prepare_weights_host(
                &p,
                Weights::Gemm1,
                &Tensor::bf16(&w1c, &[8, 64, 64]).unwrap(),
            )
            .unwrap(),
        w2: r
            .prepare_weights_host(
                &p,
                Weights::Gemm2,
                &Tensor::bf16(&w2c, &[8, 64, 32]).unwrap(),
            )
            .unwrap(),
    }
}

fn cpu() -> Runner {
    Runner::new(&Options {
        backend: Backend::Cpu,
        ..Options::default()
    })
    .unwrap()
}

#[test]
fn version_and_queries() {
    assert_eq!(version().0, 0);
    assert!(!Status::InvalidArgument.text().is_empty());
    let r = cpu();
    assert_eq!(r.backend().unwrap(), Backend::Cpu);
    assert!(r.num_configs().unwrap() > 0);
    let cfgs = r.valid_configs(&p()).unwrap();
    assert_eq!(cfgs[0], r.default_config(&p()).unwrap());
    for c in cfgs {
        let i = r.describe_config(c).unwrap();
        assert_eq!(i.index, c);
        assert_eq!(i.cluster_size, r.cluster_size(c).unwrap());
        assert_eq!(i.tile, i.cta_tile * i.cluster_size);
        assert!(!i.name.is_empty());
        assert!(r.workspace_size(&p(), c).unwrap() > 0);
    }
    assert_eq!(
        r.weights_prepared_size(&p(), Weights::Gemm1).unwrap(),
        8 * 64 * 64 * 2
    );
}

#[test]
fn prepare_run_matches_forward() {
    let r = cpu();
    let s = setup(&r);
    let p = p();
    let cfg = r.default_config(&p).unwrap();
    let mut ws = AlignedBuffer::new(r.workspace_size(&p, cfg).unwrap());
    let logits = Tensor::f32(&s.logits, &[5, 8]).unwrap();
    let hidden = Tensor::bf16(&s.hidden, &[5, 64]).unwrap();
    let ra = RoutingArgs::new().logits(&logits);
    let plan = r.prepare_routing(&p, cfg, &ra, ws.as_mut_slice()).unwrap();
    assert_eq!(plan.config(), cfg);
    let ids = plan.read_i32(PlanTable::TopkIds).unwrap();
    assert_eq!(ids.len(), 10);
    assert!(ids.iter().all(|&i| (0..8).contains(&i)));
    let mut out = vec![0u16; 5 * 64];
    {
        let w1 = Tensor::u8(s.w1.as_slice(), &[s.w1.len() as i64]).unwrap();
        let w2 = Tensor::u8(s.w2.as_slice(), &[s.w2.len() as i64]).unwrap();
        let o = TensorMut::bf16(&mut out, &[5, 64]).unwrap();
        let a = RunArgs {
            hidden_states: Some(&hidden),
            gemm1_weights: Some(&w1),
            gemm2_weights: Some(&w2),
            output: Some(&o),
            ..RunArgs::default()
        };
        r.run(&p, cfg, &plan, &a).unwrap();
    }
    let out2 = r.forward_host(&p, &ra, &hidden, &s.w1, &s.w2).unwrap();
    assert_eq!(out, out2);
    assert!(out.iter().any(|&v| v != 0));
}

#[test]
fn bad_shape() {
    let r = cpu();
    let s = setup(&r);
    let logits = Tensor::f32(&s.logits, &[5, 8]).unwrap();
    let bad = Tensor::bf16(&s.hidden[..5 * 32], &[5, 32]).unwrap();
    let e = r
        .forward_host(
            &p(),
            &RoutingArgs::new().logits(&logits),
            &bad,
            &s.w1,
            &s.w2,
        )
        .unwrap_err();
    assert_eq!(e.status(), Some(Status::InvalidArgument));
    assert_eq!(e.code(), Status::InvalidArgument.raw());
    assert_eq!(e.status_name(), "INVALID_ARGUMENT");
    assert!(!e.message().is_empty());
    // A slice that does not match its shape is caught before the call.
    assert_eq!(
        Tensor::bf16(&s.hidden, &[5, 63]).err().unwrap().status(),
        Some(Status::InvalidArgument)
    );
}

#[test]
fn bad_enum_value() {
    // Out-of-range methods and activations are unrepresentable in the typed API; the raw
    // values the library rejects map to no variant.
    assert_eq!(RoutingMethod::from_raw(42), None);
    assert_eq!(Activation::from_raw(5), None);
    assert_eq!(status_name(12345), "UNKNOWN");
    // The library still rejects them through the -sys crate.
    let r = cpu();
    let mut b = 0usize;
    let raw = sys::moe_problem {
        version: sys::MOE_PROBLEM_VERSION as u32,
        num_experts: 8,
        num_tokens: 5,
        top_k: 2,
        local_expert_offset: 0,
        local_num_experts: 0,
        reserved0: 0,
        hidden_size: 64,
        intermediate_size: 32,
        reserved: [0; 4],
    };
    let st = unsafe { sys::moe_weights_prepared_size(r.as_ptr(), &raw, 42, &mut b) };
    assert_eq!(Status::from_raw(st), Some(Status::InvalidArgument));
}

#[test]
fn too_small_workspace() {
    let r = cpu();
    let s = setup(&r);
    let p = p();
    let cfg = r.default_config(&p).unwrap();
    let mut ws = AlignedBuffer::new(r.workspace_size(&p, cfg).unwrap() - 256);
    let logits = Tensor::f32(&s.logits, &[5, 8]).unwrap();
    let e = r
        .prepare_routing(
            &p,
            cfg,
            &RoutingArgs::new().logits(&logits),
            ws.as_mut_slice(),
        )
        .err()
        .unwrap();
    assert_eq!(e.status(), Some(Status::InsufficientWorkspace), "{e}");
    assert!(!e.message().is_empty());
}

#[test]
fn runner_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Runner>();
    let r = cpu();
    let h = std::thread::spawn(move || r.num_configs().unwrap());
    assert!(h.join().unwrap() > 0);
}

/// Threads share one `&Runner` (no mutex), each with its own workspace and output; every
/// result equals the single-threaded one bit for bit, and errors stay on their thread.
#[test]
fn shared_runner_across_threads() {
    fn assert_sync<T: Sync>() {}
    assert_sync::<Runner>();
    assert_sync::<Tensor>();
    let r = cpu();
    let s = setup(&r);
    let p = p();
    let logits = Tensor::f32(&s.logits, &[5, 8]).unwrap();
    let hidden = Tensor::bf16(&s.hidden, &[5, 64]).unwrap();
    let ra = RoutingArgs::new().logits(&logits);
    let want = r.forward_host(&p, &ra, &hidden, &s.w1, &s.w2).unwrap();
    let cfg = r.default_config(&p).unwrap();
    let ws_bytes = r.workspace_size(&p, cfg).unwrap();
    let w1 = Tensor::u8(s.w1.as_slice(), &[s.w1.len() as i64]).unwrap();
    let w2 = Tensor::u8(s.w2.as_slice(), &[s.w2.len() as i64]).unwrap();
    let (r, ra, hidden, w1, w2, want) = (&r, &ra, &hidden, &w1, &w2, &want);
    std::thread::scope(|sc| {
        for t in 0..6 {
            sc.spawn(move || {
                let mut ws = AlignedBuffer::new(ws_bytes);
                for i in 0..30 {
                    let mut out = vec![0xFFFFu16; 5 * 64];
                    let o = TensorMut::bf16(&mut out, &[5, 64]).unwrap();
                    let a = RunArgs {
                        hidden_states: Some(hidden),
                        gemm1_weights: Some(w1),
                        gemm2_weights: Some(w2),
                        output: Some(&o),
                        ..RunArgs::default()
                    };
                    if (t + i) % 3 == 0 {
                        // prepare + run with its own plan
                        let plan = r.prepare_routing(&p, cfg, ra, ws.as_mut_slice()).unwrap();
                        r.run(&p, cfg, &plan, &a).unwrap();
                    } else {
                        r.forward(&p, ra, &a, ws.as_mut_slice()).unwrap();
                    }
                    assert_eq!(&out, want, "thread {t} iteration {i}");
                    if i % 10 == 0 {
                        // An error on this thread carries this thread's message.
                        let e = r.cluster_size(-1).unwrap_err();
                        assert_eq!(e.status(), Some(Status::InvalidConfig), "{e}");
                        assert!(!e.message().is_empty());
                    }
                }
            });
        }
    });
}

/// The enums and the status names cover every constant of their families in the C header:
/// a value added there fails here until the binding has it.
#[test]
fn enums_match_header() {
    let header = include_str!("../../../../include/moe_trtllm.h").replace("\\\n", " ");
    let mut seen = std::collections::HashMap::new();
    for line in header.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let val = val.trim_matches(|c| c == '(' || c == ')');
        if let Ok(v) = val.parse::<i32>() {
            seen.insert(name.to_string(), v);
        }
    }
    fn check<E: Copy + std::fmt::Debug>(
        seen: &std::collections::HashMap<String, i32>,
        prefix: &str,
        all: &[E],
        raw: fn(E) -> i32,
        c_name: fn(E) -> &'static str,
    ) {
        let mut n = 0;
        for (name, &v) in seen {
            if name.starts_with(prefix) && !name.ends_with("_VERSION") {
                n += 1;
                let found = all.iter().find(|&&e| c_name(e) == name);
                let e = found.unwrap_or_else(|| panic!("{name} = {v} has no enum variant"));
                assert_eq!(raw(*e), v, "{name}");
            }
        }
        assert_eq!(n, all.len(), "{prefix}*: header and enum differ in size");
    }
    macro_rules! chk {
        ($prefix:literal, $t:ident) => {
            check(&seen, $prefix, $t::ALL, $t::raw, $t::c_name)
        };
    }
    chk!("MOE_STATUS_", Status);
    chk!("MOE_BACKEND_", Backend);
    chk!("MOE_ROUTING_", RoutingMethod);
    chk!("MOE_ACTIVATION_", Activation);
    chk!("MOE_DTYPE_", RunnerDtype);
    chk!("MOE_SCALING_", Scaling);
    chk!("MOE_LAYOUT_", Layout);
    chk!("MOE_WEIGHTS_", Weights);
    chk!("MOE_PLAN_", PlanTable);
    for &st in Status::ALL {
        assert_eq!(Status::from_raw(st.raw()), Some(st));
        assert_eq!(st.name(), &st.c_name()["MOE_STATUS_".len()..]);
        assert_eq!(status_name(st.raw()), st.name());
    }
    assert_eq!(Status::InvalidArgument.name(), "INVALID_ARGUMENT");
}

#[test]
fn autotune() {
    let r = cpu();
    let s = setup(&r);
    let p = p();
    let cfgs = r.valid_configs(&p).unwrap();
    let n = cfgs
        .iter()
        .map(|&c| r.workspace_size(&p, c).unwrap())
        .max()
        .unwrap();
    let mut ws = AlignedBuffer::new(n);
    let logits = Tensor::f32(&s.logits, &[5, 8]).unwrap();
    let hidden = Tensor::bf16(&s.hidden, &[5, 64]).unwrap();
    let w1 = Tensor::u8(s.w1.as_slice(), &[s.w1.len() as i64]).unwrap();
    let w2 = Tensor::u8(s.w2.as_slice(), &[s.w2.len() as i64]).unwrap();
    let mut out = vec![0u16; 5 * 64];
    let o = TensorMut::bf16(&mut out, &[5, 64]).unwrap();
    let a = RunArgs {
        hidden_states: Some(&hidden),
        gemm1_weights: Some(&w1),
        gemm2_weights: Some(&w2),
        output: Some(&o),
        ..RunArgs::default()
    };
    let res = r
        .autotune(
            &p,
            &RoutingArgs::new().logits(&logits),
            &a,
            ws.as_mut_slice(),
            2,
        )
        .unwrap();
    assert_eq!(res.len(), cfgs.len());
    assert!(res.windows(2).all(|w| w[0].1 <= w[1].1));
}

// ---- grouped run (moe_runner_run_grouped) ------------------------------------------------------
fn gp() -> Problem {
    Problem {
        local_expert_offset: 4,
        local_num_experts: 4,
        ..Problem::new(8, 12, 1, 64, 32)
    }
}

struct Grouped {
    hidden: Vec<u16>,
    w1: AlignedBuffer,
    w2: AlignedBuffer,
    cfg: i32,
}

fn grouped_setup(r: &Runner) -> Grouped {
    let p = gp();
    let w1c = gen_bf16(11, 4, 8, 4 * 64 * 64);
    let w2c = gen_bf16(11, 5, 8, 4 * 64 * 32);
    let t1 = Tensor::bf16(&w1c, &[4, 64, 64]).unwrap();
    let t2 = Tensor::bf16(&w2c, &[4, 64, 32]).unwrap();
    Grouped {
        hidden: gen_bf16(11, 3, 6, 12 * 64),
        w1: r.prepare_weights_host(&p, Weights::Gemm1, &t1).unwrap(),
        w2: r.prepare_weights_host(&p, Weights::Gemm2, &t2).unwrap(),
        cfg: r.default_config(&p).unwrap(),
    }
}

/// Runs the grouped layer on host tensors; returns the output (zeroed before the call).
fn run_grouped(
    r: &Runner,
    g: &Grouped,
    layout: Layout,
    capacity: i64,
    shape: &[i64],
    counts: &Tensor,
) -> Result<Vec<u16>> {
    let p = gp();
    let mut ws = AlignedBuffer::new(r.grouped_workspace_size(&p, g.cfg)?);
    let mut out = vec![0u16; 12 * 64];
    let hidden = Tensor::bf16(&g.hidden, shape)?;
    let w1 = Tensor::u8(g.w1.as_slice(), &[g.w1.len() as i64])?;
    let w2 = Tensor::u8(g.w2.as_slice(), &[g.w2.len() as i64])?;
    {
        let o = TensorMut::bf16(&mut out, shape)?;
        let a = GroupedArgs {
            layout,
            capacity,
            hidden_states: Some(&hidden),
            expert_counts: Some(counts),
            gemm1_weights: Some(&w1),
            gemm2_weights: Some(&w2),
            output: Some(&o),
            ..GroupedArgs::default()
        };
        r.run_grouped(&p, g.cfg, &a, ws.as_mut_slice())?;
    }
    Ok(out)
}

#[test]
fn run_grouped_both_layouts() {
    let r = cpu();
    let g = grouped_setup(&r);
    let c = [3, 0, 5, 2];
    let contig = run_grouped(
        &r,
        &g,
        Layout::Contiguous,
        0,
        &[12, 64],
        &Tensor::i32(&c, &[4]).unwrap(),
    )
    .unwrap();
    assert!(
        contig[10 * 64..].iter().all(|&v| v == 0),
        "rows past the sum"
    );
    let m = [3, 0, 1, 2];
    let masked = run_grouped(
        &r,
        &g,
        Layout::Masked,
        3,
        &[4, 3, 64],
        &Tensor::i32(&m, &[4]).unwrap(),
    )
    .unwrap();
    assert_eq!(masked[..3 * 64], contig[..3 * 64]);
    assert!(masked[3 * 64..6 * 64].iter().all(|&v| v == 0));
}

#[test]
fn run_grouped_misuse_is_the_library_error() {
    let r = cpu();
    let g = grouped_setup(&r);
    // A layout outside the header's values cannot be built: Layout only has the MOE_LAYOUT_*.
    assert_eq!(Layout::from_raw(7), None);
    let (ok, short, big) = ([3, 0, 5, 2], [3, 0, 5], [13, 0, 0, 0]);
    let f = [3.0f32, 0.0, 5.0, 2.0];
    let cases: Vec<(Layout, i64, Vec<i64>, Tensor, &str)> = vec![
        (
            Layout::Contiguous,
            0,
            vec![12, 64],
            Tensor::f32(&f, &[4]).unwrap(),
            "args->expert_counts",
        ),
        (
            Layout::Contiguous,
            0,
            vec![12, 64],
            Tensor::i32(&short, &[3]).unwrap(),
            "args->expert_counts",
        ),
        (
            Layout::Masked,
            4,
            vec![4, 3, 64],
            Tensor::i32(&ok, &[4]).unwrap(),
            "args->capacity",
        ),
        (
            Layout::Contiguous,
            3,
            vec![12, 64],
            Tensor::i32(&ok, &[4]).unwrap(),
            "args->capacity",
        ),
        (
            Layout::Contiguous,
            0,
            vec![12, 64],
            Tensor::i32(&big, &[4]).unwrap(),
            "args->expert_counts",
        ),
    ];
    for (layout, cap, shape, counts, needle) in cases {
        let e = run_grouped(&r, &g, layout, cap, &shape, &counts).unwrap_err();
        assert_eq!(e.status(), Some(Status::InvalidArgument), "{e}");
        assert!(e.message().contains(needle), "{e}");
    }
}
