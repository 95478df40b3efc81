//! What the provider may do in its namespace, asked of the API server itself
//! (`SelfSubjectAccessReview`), so `warren doctor` names a missing RBAC rule before a run trips
//! over it. The list is every call the provider makes; `deploy/kubernetes/role.yaml` grants
//! exactly these (its test holds it to the provider's real requests).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

/// (API group, resource, subresource, verb) for every call the provider makes.
pub const NEEDED: &[(&str, &str, &str, &str)] = &[
    ("", "pods", "", "create"),
    ("", "pods", "", "get"),
    ("", "pods", "", "list"),
    ("", "pods", "", "watch"),
    ("", "pods", "", "delete"),
    ("", "pods", "exec", "create"),
    ("networking.k8s.io", "networkpolicies", "", "create"),
];

/// `verb resource[/subresource]` as kubectl spells it, for messages.
fn spelled(group: &str, resource: &str, subresource: &str, verb: &str) -> String {
    let resource = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    if subresource.is_empty() {
        format!("{verb} {resource}")
    } else {
        format!("{verb} {resource}/{subresource}")
    }
}

/// The needed rights the API server says this identity lacks in `namespace` (empty: all held).
pub(crate) async fn missing(
    client: kube::Client,
    namespace: &str,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client);
    let mut missing = Vec::new();
    for (group, resource, subresource, verb) in NEEDED {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_owned()),
                    group: Some((*group).to_owned()),
                    resource: Some((*resource).to_owned()),
                    subresource: (!subresource.is_empty()).then(|| (*subresource).to_owned()),
                    verb: Some((*verb).to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.push(spelled(group, resource, subresource, verb));
        }
    }
    Ok(missing)
}
