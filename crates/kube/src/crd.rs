//! The schema defaults of the cluster's custom resources, read from their
//! CustomResourceDefinitions (see [`driftguard_core::crd::CrdDefaults`]).
//!
//! One paginated list of `apiextensions.k8s.io/v1` (`v1beta1` on servers older than 1.16).
//! Only the schemas are kept, reduced to the paths that lead to a default.

use driftguard_core::crd::CrdDefaults;
use kube::api::ListParams;

use crate::error::{Error, Result};
use crate::list::for_each_page;

const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Reads the defaults of every CRD. A cluster that forbids listing CRDs, or serves none, gives
/// an error the caller reports; the engine then compares custom resources without them.
pub async fn crd_defaults(client: &kube::Client) -> Result<CrdDefaults> {
    let mut last = None;
    for version in VERSIONS {
        match list_crds(client, version).await {
            Ok(defaults) => return Ok(defaults),
            // 404: this version is not served; try the older one.
            Err(Error::Api {
                code: Some(404), ..
            }) => {}
            Err(err) => return Err(err),
        }
        last = Some(version);
    }
    Err(Error::Api {
        what: "list customresourcedefinitions".to_owned(),
        code: Some(404),
        message: format!(
            "apiextensions.k8s.io is not served (tried up to {})",
            last.unwrap_or("v1")
        ),
    })
}

async fn list_crds(client: &kube::Client, version: &str) -> Result<CrdDefaults> {
    let what = format!("list customresourcedefinitions.{version}.apiextensions.k8s.io");
    let request = kube::core::Request::new(format!(
        "/apis/apiextensions.k8s.io/{version}/customresourcedefinitions"
    ));
    let mut defaults = CrdDefaults::default();
    let mut undecodable = None;
    let params = ListParams::default().limit(100);
    for_each_page(client, &request, params, &what, |crds| {
        for crd in &crds {
            match serde_json::from_str(crd.get()) {
                Ok(crd) => defaults.insert_crd(&crd),
                Err(e) => {
                    undecodable.get_or_insert(e);
                }
            }
        }
    })
    .await?;
    match undecodable {
        Some(source) => Err(Error::Decode { what, source }),
        None => Ok(defaults),
    }
}
