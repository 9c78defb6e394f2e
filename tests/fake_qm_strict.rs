//! The stand-in must make a sloppy client fail: these requests break the documented
//! protocol in one way each and must be refused.

mod support;

use support::fake_qm::{FakeConfig, FakeQm};

const ROW: &str = r#"{"timeId":"1700000000","callId":"c","queue":"q","agent":"a","verb":"V","parameters":["","","","",""]}"#;
const AUTH: &str = "Basic d2VicWxvYWRlcjpxbG9hZGVy";

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn insert_all(rows: &str) -> String {
    format!(r#"{{"commandId":"insertAll","version":"1.0","token":"","rows":[{rows}]}}"#)
}

struct Sent {
    status: i32,
    body: String,
    www_authenticate: bool,
}

fn post(qm: &FakeQm, path: &str, auth: Option<&str>, ctype: &str, body: Vec<u8>) -> Sent {
    let mut req = minreq::post(format!("http://127.0.0.1:{}{path}", qm.port()))
        .with_header("Content-Type", ctype)
        .with_body(body)
        .with_timeout(5);
    if let Some(a) = auth {
        req = req.with_header("Authorization", a);
    }
    let r = req.send().unwrap();
    Sent {
        status: r.status_code,
        www_authenticate: r.headers.contains_key("www-authenticate"),
        body: String::from_utf8_lossy(r.as_bytes()).into_owned(),
    }
}

fn form(json: &str) -> Vec<u8> {
    format!("COMMANDSTRING={}", enc(json)).into_bytes()
}

const FORM: &str = "application/x-www-form-urlencoded";
const PATH: &str = "/queuemetrics/jsonQLoaderApi.do";

#[test]
fn a_correct_request_is_accepted() {
    let qm = FakeQm::start(FakeConfig::default());
    let r = post(&qm, PATH, Some(AUTH), FORM, form(&insert_all(ROW)));
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(r#""resultStatus":"OK","result":"1""#),
        "{}",
        r.body
    );
    assert_eq!(qm.rows("").len(), 1);
    assert!(qm.violations().is_empty());
}

#[test]
fn no_auth_is_401_without_a_challenge() {
    let qm = FakeQm::start(FakeConfig::default());
    let r = post(&qm, PATH, None, FORM, form(&insert_all(ROW)));
    assert_eq!(r.status, 401);
    assert!(!r.www_authenticate, "QueueMetrics never challenges");
    let r = post(
        &qm,
        PATH,
        Some("Basic d3Jvbmc6d3Jvbmc="),
        FORM,
        form(&insert_all(ROW)),
    );
    assert_eq!(r.status, 401);
    assert!(qm.rows("").is_empty());
}

#[test]
fn wrong_context_is_404() {
    let qm = FakeQm::start(FakeConfig::default());
    assert_eq!(
        post(
            &qm,
            "/qm/jsonQLoaderApi.do",
            Some(AUTH),
            FORM,
            form(&insert_all(ROW))
        )
        .status,
        404
    );
}

#[test]
fn json_body_instead_of_a_form_is_refused() {
    let qm = FakeQm::start(FakeConfig::default());
    let r = post(
        &qm,
        PATH,
        Some(AUTH),
        "application/json",
        insert_all(ROW).into_bytes(),
    );
    assert_eq!(r.status, 400);
    let r = post(
        &qm,
        PATH,
        Some(AUTH),
        FORM,
        format!("CMD={}", enc(&insert_all(ROW))).into_bytes(),
    );
    assert_eq!(r.status, 400, "only the COMMANDSTRING field is understood");
}

#[test]
fn raw_utf8_in_the_form_is_ko() {
    let qm = FakeQm::start(FakeConfig::default());
    let row = ROW.replace(r#""a""#, r#""José""#);
    let mut body = b"COMMANDSTRING=".to_vec();
    // Percent-encoded UTF-8 bytes: the servlet would decode them as ISO-8859-1.
    for b in insert_all(&row).bytes() {
        body.extend_from_slice(format!("%{b:02X}").as_bytes());
    }
    let r = post(&qm, PATH, Some(AUTH), FORM, body);
    assert!(r.body.contains("KO"), "{}", r.body);
    assert!(qm.rows("").is_empty());
}

#[test]
fn four_parameters_or_unknown_fields_are_ko() {
    let qm = FakeQm::start(FakeConfig::default());
    let four = ROW.replace(r#"["","","","",""]"#, r#"["","","",""]"#);
    assert!(post(&qm, PATH, Some(AUTH), FORM, form(&insert_all(&four)))
        .body
        .contains("KO"));
    let extra = ROW.replace(r#""verb":"V""#, r#""verb":"V","data":"x""#);
    assert!(post(&qm, PATH, Some(AUTH), FORM, form(&insert_all(&extra)))
        .body
        .contains("KO"));
    let numeric_time = ROW.replace(r#""1700000000""#, "1700000000");
    assert!(post(
        &qm,
        PATH,
        Some(AUTH),
        FORM,
        form(&insert_all(&numeric_time))
    )
    .body
    .contains("KO"));
    assert!(qm.rows("").is_empty());
    assert_eq!(qm.violations().len(), 3);
}

#[test]
fn a_body_over_1_mib_is_413() {
    let qm = FakeQm::start(FakeConfig::default());
    let rows = vec![ROW; 8000].join(",");
    let body = form(&insert_all(&rows));
    assert!(body.len() > 1024 * 1024);
    assert_eq!(post(&qm, PATH, Some(AUTH), FORM, body).status, 413);
}
