//! Opening a store that cannot be used fails with `StoreError::Database`, classified so the
//! hint says what to check, and never repeats the password.

use warren_domain::{ReasonCode, UserFacing};
use warren_store::{DatabaseProblem, StoreError};
use warren_store_postgres::{PostgresStore, testing};

fn problem_of(url: &str) -> (DatabaseProblem, StoreError) {
    let err = PostgresStore::open(url).unwrap_err();
    match &err {
        StoreError::Database { problem, .. } => (*problem, err),
        other => panic!("expected a Database error, got {other:?}"),
    }
}

#[test]
fn an_unreachable_server_says_so() {
    // A port nothing listens on: bound, read, released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (problem, err) = problem_of(&format!(
        "postgres://warren:secret@127.0.0.1:{port}/warren?connect_timeout=2"
    ));
    assert_eq!(problem, DatabaseProblem::Unreachable);
    assert_eq!(err.reason_code(), ReasonCode::StoreFailed);
    let message = err.to_string();
    assert!(
        message.contains(&format!("postgres://warren@127.0.0.1:{port}/warren")),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
    assert!(
        err.hint()
            .unwrap()
            .contains("check that PostgreSQL is running")
    );
}

#[test]
fn wrong_credentials_and_a_missing_database_are_rejected() {
    let Some(server) = testing::shared() else {
        return;
    };
    let url = server.fresh_database();
    let wrong = url.replace(testing::PASSWORD, "not-the-password");
    let (problem, err) = problem_of(&wrong);
    assert_eq!(problem, DatabaseProblem::Rejected, "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    assert!(err.hint().unwrap().contains("user name and password"));

    let nobody = url.replace(testing::USER, "nobody");
    assert_eq!(problem_of(&nobody).0, DatabaseProblem::Rejected);

    let missing = server.url("no_such_database");
    assert_eq!(problem_of(&missing).0, DatabaseProblem::Rejected);

    // The URL without a password, where the server asks for one.
    let passwordless = url.replace(&format!(":{}", testing::PASSWORD), "");
    assert_eq!(problem_of(&passwordless).0, DatabaseProblem::Rejected);
}

#[test]
fn a_malformed_url_is_a_config_problem() {
    let (problem, err) = problem_of("postgres://warren:secret@127.0.0.1:notaport/db");
    assert_eq!(problem, DatabaseProblem::Config);
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(
        err.hint()
            .unwrap()
            .contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE")
    );
}
