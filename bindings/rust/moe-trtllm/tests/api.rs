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
                WEIGHTS_GEMM1,
                &Tensor::bf16(&w1c, &[8, 64, 64]).unwrap(),
            )
            .unwrap(),
        w2: r
            .prepare_weights_host(
                &p,
                WEIGHTS_GEMM2,
                &Tensor::bf16(&w2c, &[8, 64, 32]).unwrap(),
            )
            .unwrap(),
    }
}

fn cpu() -> Runner {
    Runner::new(&Options {
        backend: BACKEND_CPU,
        ..Options::default()
    })
    .unwrap()
}

#[test]
fn version_and_queries() {
    assert_eq!(version().0, 0);
    assert!(!status_string(STATUS_INVALID_ARGUMENT).is_empty());
    let r = cpu();
    assert_eq!(r.backend().unwrap(), BACKEND_CPU);
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
        r.weights_prepared_size(&p(), WEIGHTS_GEMM1).unwrap(),
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
    let ids = plan.read_i32(PLAN_TOPK_IDS).unwrap();
    assert_eq!(ids.len(), 10);
    assert!(ids.iter().all(|&i| (0..8).contains(&i)));
    let mut out = vec![0u16; 5 * 64];
    {
        let w1 = Tensor::u8(s.w1.as_slice(), &[s.w1.len() as i64]).unwrap();
        let w2 = Tensor::u8(s.w2.as_slice(), &[s.w2.len() as i64]).unwrap();
        let o = Tensor::bf16_mut(&mut out, &[5, 64]).unwrap();
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
    assert_eq!(e.status, STATUS_INVALID_ARGUMENT);
    assert!(!e.message.is_empty());
    // A slice that does not match its shape is caught before the call.
    assert_eq!(
        Tensor::bf16(&s.hidden, &[5, 63]).err().unwrap().status,
        STATUS_INVALID_ARGUMENT
    );
}

#[test]
fn bad_enum_value() {
    let r = cpu();
    let s = setup(&r);
    let logits = Tensor::f32(&s.logits, &[5, 8]).unwrap();
    let hidden = Tensor::bf16(&s.hidden, &[5, 64]).unwrap();
    let e = r
        .forward_host(
            &p(),
            &RoutingArgs::new().logits(&logits).method(42),
            &hidden,
            &s.w1,
            &s.w2,
        )
        .unwrap_err();
    assert_eq!(e.status, STATUS_INVALID_ARGUMENT);
    assert!(!e.message.is_empty());
    let e = Runner::new(&Options {
        backend: BACKEND_CPU,
        activation: 5,
        ..Options::default()
    })
    .err()
    .unwrap();
    assert_eq!(e.status, STATUS_INVALID_ARGUMENT);
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
    assert_eq!(e.status, STATUS_INSUFFICIENT_WORKSPACE, "{e}");
    assert!(!e.message.is_empty());
}

#[test]
fn runner_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Runner>();
    let r = cpu();
    let h = std::thread::spawn(move || r.num_configs().unwrap());
    assert!(h.join().unwrap() > 0);
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
    let o = Tensor::bf16_mut(&mut out, &[5, 64]).unwrap();
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
