//! The NVS-solver λ tables against the reference search's output (spec data, float64).

use trajattn::nvs;

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/spec/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn sigmas(steps: usize) -> Vec<f64> {
    fixture(&format!("scheduler_{steps}_steps.tsv"))
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap().parse::<f64>().unwrap())
        .collect()
}

#[test]
fn lambda_tables_match_the_reference_search() {
    for (steps, params) in
        [(25, (0.001, 1000.0, 10.0)), (50, (0.001, 950.0, 10.0)), (100, (0.001, 1000.0, 10.0))]
    {
        let s = sigmas(steps);
        assert_eq!(s.len(), steps);
        let t = nvs::search(&s, nvs::FRAMES).expect("an admissible candidate");
        assert_eq!(t.params, params, "{steps} steps: chosen hyper-parameters");
        let want: Vec<Vec<f64>> = fixture(&format!("nvs_lambda_ts_{steps}_steps.csv"))
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect())
            .collect();
        assert_eq!(t.table.len(), want.len());
        let mut worst = 0.0f64;
        for (a, b) in t.table.iter().flatten().zip(want.iter().flatten()) {
            worst = worst.max((a - b).abs());
        }
        // The same float64 formulas: 25 and 50 steps agree below 1e-13, 100 steps to 5.5e-13 (last-bit
        // differences of the root near λ/(1+λ) ≈ 1); 1e-12 is far below anything the [0.6, 1] clamp can see.
        assert!(worst < 1e-12, "{steps} steps: max |Δλ| = {worst:e}");
    }
}
