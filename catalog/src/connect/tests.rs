use super::*;

/// A CA that signed nothing the tests connect to (a throwaway, its key discarded).
const UNRELATED_CA: &[u8] = include_bytes!("../../tests/fixtures/unrelated-ca.crt");

#[test]
fn the_libpq_modes_map_to_what_tokio_postgres_negotiates() {
    use tokio_postgres::config::SslMode as Tp;
    for (mode, tp) in [
        ("disable", Tp::Disable),
        ("allow", Tp::Prefer),
        ("prefer", Tp::Prefer),
        ("require", Tp::Require),
        ("verify-ca", Tp::Require),
        ("verify-full", Tp::Require),
    ] {
        let target = parse(&format!("postgres://u@db/x?sslmode={mode}")).expect(mode);
        assert_eq!(target.config.get_ssl_mode(), tp, "{mode}");
    }
    let target = parse("host=db user=u").expect("no sslmode");
    assert_eq!(target.tls.mode, SslMode::Prefer, "libpq's default");
}

#[test]
fn what_is_verified_follows_libpq() {
    let without = |mode| TlsSettings {
        mode,
        roots: Vec::new(),
    };
    let with = |mode| TlsSettings {
        mode,
        roots: vec![CertificateDer::from(vec![0u8])],
    };
    assert_eq!(without(SslMode::Require).verification(), Verification::None);
    assert_eq!(with(SslMode::Require).verification(), Verification::Chain);
    assert_eq!(with(SslMode::Prefer).verification(), Verification::None);
    assert_eq!(with(SslMode::VerifyCa).verification(), Verification::Chain);
    assert_eq!(
        with(SslMode::VerifyFull).verification(),
        Verification::ChainAndName
    );
}

#[test]
fn the_rest_of_the_string_still_reaches_tokio_postgres() {
    let target = parse(
        "postgres://app:pw@db:6543/phoenix?sslmode=verify-ca&application_name=dp&connect_timeout=3",
    )
    .expect("valid")
    .with_ca_pem(UNRELATED_CA, "test")
    .expect("valid CA");
    assert_eq!(target.config.get_ports(), &[6543]);
    assert_eq!(target.config.get_dbname(), Some("phoenix"));
    assert_eq!(target.config.get_application_name(), Some("dp"));
    assert_eq!(target.tls.mode, SslMode::VerifyCa);
    assert!(target.tls.has_ca());
}

#[test]
fn an_unknown_mode_is_refused_by_name() {
    let error = parse("postgres://u:hunter2@db/x?sslmode=verify").expect_err("unknown mode");
    assert!(
        matches!(error, ConnectError::InvalidSslMode { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("hunter2"));
}

#[test]
fn errors_never_carry_the_password() {
    for dsn in [
        "postgres://u:hunter2@db:notaport/x",
        "postgres://u:hunter2@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
        "host=db password=hunter2 sslcert=/c.crt",
        "host=db password=hunter2 bogus=1",
    ] {
        let error = parse(dsn).expect_err(dsn);
        assert!(!error.to_string().contains("hunter2"), "{dsn}: {error}");
        assert!(
            !format!("{error:?}").contains("hunter2"),
            "{dsn}: {error:?}"
        );
    }
}

#[test]
fn a_missing_ca_file_names_the_file() {
    let error = parse("host=db sslmode=verify-full sslrootcert=/nonexistent/ca.crt")
        .expect_err("missing file");
    assert!(error.to_string().contains("/nonexistent/ca.crt"), "{error}");
}

#[test]
fn a_verifying_mode_without_a_ca_is_refused_when_building_the_connector() {
    let target = parse("host=db sslmode=verify-full").expect("valid");
    let error = target.connector().err().expect("no CA");
    assert!(matches!(error, ConnectError::MissingCa { .. }), "{error}");
    assert!(
        parse("host=db sslmode=require")
            .expect("valid")
            .connector()
            .is_ok()
    );
    assert!(
        parse("host=db sslmode=disable")
            .expect("valid")
            .connector()
            .is_ok()
    );
}

#[test]
fn a_ca_bundle_without_certificates_is_refused() {
    let target = parse("host=db sslmode=verify-ca").expect("valid");
    let error = target
        .clone()
        .with_ca_pem(b"not pem at all", "Secret ns/ca key ca.crt")
        .expect_err("no certificate");
    assert!(error.to_string().contains("Secret ns/ca"), "{error}");
    let with_ca = target.with_ca_pem(UNRELATED_CA, "test").expect("a CA");
    assert!(with_ca.connector().is_ok());
}

#[test]
fn the_mode_can_be_overridden() {
    let target = parse("postgres://db/x?sslmode=disable")
        .expect("valid")
        .with_ssl_mode(SslMode::Require);
    assert_eq!(
        target.config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
}

#[test]
fn debug_output_has_no_password() {
    let target = parse("postgres://u:hunter2@db/x").expect("valid");
    assert!(!format!("{target:?}").contains("hunter2"));
}

#[test]
fn a_tokio_postgres_config_keeps_its_mode() {
    let config: tokio_postgres::Config = "host=db sslmode=disable".parse().expect("valid");
    assert_eq!(PgTarget::from(config).tls.mode, SslMode::Disable);
    let config: tokio_postgres::Config = "host=db sslmode=require".parse().expect("valid");
    let target = PgTarget::from(config);
    assert_eq!(target.tls.verification(), Verification::None);
}
