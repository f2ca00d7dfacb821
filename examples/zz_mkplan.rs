// throwaway: card inventory port nodes... -> plan.json on stdout
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let card: skulk::card::ModelCard = serde_yaml_ng::from_str(&std::fs::read_to_string(&a[1]).unwrap()).unwrap();
    let inv: serde_json::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&a[2]).unwrap()).unwrap();
    let inv = skulk::inventory::parse(&inv).unwrap();
    let req = skulk::plan::PlanRequest { nodes: Some(a[4..].to_vec()), port: Some(a[3].parse().unwrap()), ..Default::default() };
    let plan = skulk::plan::plan(&card, &inv, &req).unwrap();
    print!("{}", skulk::plan::PlanDocument::from_plan(&plan).to_json());
}
