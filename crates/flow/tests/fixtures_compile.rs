//! Every example flow under `tests/flows/` compiles, without warnings; so do the examples of the
//! flow reference (`docs/flows.md`), which documents every supported type.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use voxflow_flow as flow;

#[test]
fn fixtures_compile_without_warnings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flows");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/flows exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable fixture");
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
        let program = flow::compile(&json)
            .unwrap_or_else(|d| panic!("{}: does not compile: {d:#?}", path.display()));
        assert!(
            program.warnings().is_empty(),
            "{}: warnings {:#?}",
            path.display(),
            program.warnings()
        );
        assert!(!program.is_empty());
        count += 1;
    }
    assert!(count >= 5, "expected the example flows, found {count}");
}

#[test]
fn fixtures_survive_assign_ids_and_recompile() {
    let text = include_str!("flows/ivr.json");
    let mut json: serde_json::Value = serde_json::from_str(text).unwrap();
    // Drop one id; assign_ids fills it and the flow still compiles with the same shape.
    json[7].as_object_mut().unwrap().remove("id");
    let mut n = 0;
    flow::assign_ids(&mut json, || {
        n += 1;
        format!("generated-{n}")
    });
    assert_eq!(json[7]["id"], "generated-1");
    assert_eq!(json[0]["id"], "answer");
    let program = flow::compile(&json).unwrap();
    assert_eq!(program.len(), 9);
    assert_eq!(program.index_of("generated-1"), Some(7));
}

#[test]
fn mutated_fixtures_never_panic_and_report_action_paths() {
    let replacements = [
        serde_json::json!(null),
        serde_json::json!(true),
        serde_json::json!(-1),
        serde_json::json!(1.5),
        serde_json::json!(u64::MAX),
        serde_json::json!(""),
        serde_json::json!("x"),
        serde_json::json!("00000000-0000-0000-0000-000000000000"),
        serde_json::json!([]),
        serde_json::json!(["a", 1]),
        serde_json::json!({}),
        serde_json::json!({"k": "v"}),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flows");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let original: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let actions = original.as_array().unwrap();
        for (i, action) in actions.iter().enumerate() {
            let mut fields: Vec<Vec<String>> = action
                .as_object()
                .unwrap()
                .keys()
                .map(|k| vec![k.clone()])
                .collect();
            if let Some(option) = action.get("option").and_then(|o| o.as_object()) {
                fields.extend(option.keys().map(|k| vec!["option".into(), k.clone()]));
            }
            for field in &fields {
                for replacement in &replacements {
                    let mut mutated = original.clone();
                    let mut target = &mut mutated[i];
                    for key in field {
                        target = &mut target[key.as_str()];
                    }
                    *target = replacement.clone();
                    if let Err(diags) = flow::compile(&mutated) {
                        assert!(diags.iter().any(|d| d.severity == flow::Severity::Error));
                        for d in diags {
                            // Every path names an existing action (a removed id may also break
                            // the actions that refer to it).
                            let index: usize = d
                                .path
                                .strip_prefix("actions[")
                                .and_then(|rest| rest.split(']').next())
                                .and_then(|n| n.parse().ok())
                                .unwrap_or_else(|| panic!("{}: bad path in {d}", path.display()));
                            assert!(index < actions.len(), "{d}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn action_reference_documents_every_supported_type_with_valid_examples() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/flows.md");
    let text = std::fs::read_to_string(&path).expect("docs/flows.md exists");
    let (supported_part, unsupported_part) = text
        .split_once("## Recognised, not supported yet")
        .expect("the unsupported section");
    for t in flow::ActionType::ALL {
        let heading = format!("\n### {t}\n");
        let listed = format!("`{t}`");
        if t.is_supported() {
            let section = section_after(supported_part, &heading)
                .unwrap_or_else(|| panic!("no section for {t}"));
            // The section shows the action itself, not only related ones.
            let shows_itself = json_blocks(section).any(|json| {
                serde_json::from_str::<serde_json::Value>(json)
                    .is_ok_and(|v| v["type"] == t.as_str())
            });
            assert!(shows_itself, "the section for {t} has no {t} example");
            assert!(
                !unsupported_part.contains(&listed),
                "{t} listed as unsupported"
            );
        } else {
            assert!(!supported_part.contains(&heading), "{t} has a section");
            assert!(unsupported_part.contains(&listed), "{t} not listed");
        }
    }
    // Every ```json block compiles: an action object on its own, apart from the ids of actions
    // it does not show; an array as a whole flow, without errors or warnings.
    let mut examples = 0;
    for json in json_blocks(&text) {
        let value: serde_json::Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("invalid example JSON {json}: {e}"));
        if value.is_array() {
            let program = flow::compile(&value)
                .unwrap_or_else(|d| panic!("{json}: does not compile: {d:#?}"));
            assert!(
                program.warnings().is_empty(),
                "{json}: {:#?}",
                program.warnings()
            );
        } else {
            assert!(value.is_object(), "{json}: neither an action nor a flow");
            if let Err(diags) = flow::compile(&serde_json::Value::Array(vec![value])) {
                for d in diags.iter().filter(|d| d.severity == flow::Severity::Error) {
                    assert!(d.message.starts_with("no action has the id"), "{json}: {d}");
                }
            }
        }
        examples += 1;
    }
    let supported = flow::ActionType::ALL
        .iter()
        .filter(|t| t.is_supported())
        .count();
    assert!(examples > supported, "found {examples} examples");
}

/// The text from `heading` to the next heading of any level.
fn section_after<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let start = text.find(heading)? + heading.len();
    let rest = text.get(start..)?;
    Some(rest.find("\n#").map_or(rest, |end| &rest[..end]))
}

/// The contents of the ```json fenced blocks in `text`.
fn json_blocks(text: &str) -> impl Iterator<Item = &str> {
    text.split("```json\n")
        .skip(1)
        .map(|block| block.split("\n```").next().unwrap_or_default())
}
