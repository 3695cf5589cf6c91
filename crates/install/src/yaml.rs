//! Reading YAML streams back, for comparisons of parsed objects.

/// Parses a multi-document YAML stream (such as `mizzen manifests` or `helm template`
/// output) into JSON values, skipping empty documents.
pub fn parse_stream(yaml: &str) -> Result<Vec<serde_json::Value>, serde_saphyr::Error> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}
