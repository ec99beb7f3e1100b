//! Pages of the held-write workflow (`/_hpki/pending`) and of emergency access, as
//! server-rendered HTML (no JavaScript, forms with an anti-forgery token) or JSON.
//!
//! Everything an assistant typed is untrusted: it is shown escaped (invisible characters
//! made visible), a form-encoded body as a table of fields, a JSON body pretty-printed,
//! anything else as text or, when binary, by size only.

use std::fmt::Write;

use http::StatusCode;
use serde_json::{json, Value};

use crate::pages::{
    escape_html, escape_untrusted, html_document_with_forms, Page, CONTENT_TYPE_HTML,
    CONTENT_TYPE_JSON,
};
use crate::pki::name::hex;
use crate::store::{
    format_time, ConfirmationSignature, DoctorRef, EmergencyGrant, NewPending, PendingState,
    PendingWrite,
};

/// Who is looking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    Doctor(DoctorRef),
    Assistant(String),
    /// A card that is neither a supervising doctor (no HPKI id) nor a ledger assistant.
    Nobody,
}

/// How much of a body a page shows.
const SHOWN_BODY: usize = 64 * 1024;

/// What a supervising doctor signs to confirm an entry (`confirm.require_signature`), for
/// the entry's page: the confirmation text and its SHA-256, or why the entry has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningPrompt {
    Ready {
        text: String,
        digest_hex: String,
    },
    /// The entry holds something no confirmation text may carry (a control character).
    Unsignable(String),
}

/// Where the confirmation text of an entry is downloaded.
pub fn confirmation_text_url(id: &str) -> String {
    format!("/_hpki/pending/{id}/confirmation.txt")
}

/// The command a doctor runs on the workstation to sign a digest with the signing card.
pub fn sign_command(digest_hex: &str) -> String {
    format!("hpki-card sign --digest {digest_hex}")
}

fn json_page(status: StatusCode, v: Value) -> Page {
    Page {
        status,
        content_type: CONTENT_TYPE_JSON,
        body: v.to_string(),
    }
}

fn html_page(status: StatusCode, title: &str, main: &str) -> Page {
    Page {
        status,
        content_type: CONTENT_TYPE_HTML,
        body: html_document_with_forms(title, main),
    }
}

fn state_label(state: PendingState) -> (&'static str, &'static str) {
    match state {
        PendingState::Pending => ("確定待ち", "awaiting confirmation"),
        PendingState::Forwarding => ("送信中", "being forwarded"),
        PendingState::Forwarded => ("確定済み", "confirmed and delivered"),
        PendingState::Failed => ("送信失敗（再試行可）", "delivery failed (retry possible)"),
        PendingState::Rejected => ("差し戻し", "rejected"),
        PendingState::Expired => ("期限切れ", "expired"),
    }
}

/// The body as text, when it is text.
fn body_text(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(&body[..body.len().min(SHOWN_BODY)]).ok()
}

/// JSON form of an entry (both the assistant and the doctors see this).
pub fn entry_json(e: &PendingWrite) -> Value {
    json!({
        "id": e.id,
        "state": e.state.as_str(),
        "method": e.method,
        "path": e.path_and_query,
        "headers": e.headers,
        "body": String::from_utf8_lossy(&e.body[..e.body.len().min(SHOWN_BODY)]),
        "body_bytes": e.body.len(),
        "assistant_id": e.assistant_id,
        "assistant_name": e.assistant_name,
        "created_at": format_time(e.created_at),
        "expires_at": format_time(e.expires_at),
        "decided_by": e.confirmer.as_ref().map(|c| &c.hpki_id),
        "decided_by_name": e.confirmer.as_ref().map(|c| &c.name),
        "decided_at": e.decided_at.map(format_time),
        "reject_reason": e.reject_reason,
        "attempts": e.attempts,
        "upstream_status": e.upstream_status,
        "upstream_content_type": e.upstream_content_type,
        "upstream_body": e.upstream_body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
        "last_error": e.last_error,
        "forwarded_at": e.forwarded_at.map(format_time),
        "confirmation_signature": e.signature.as_ref().map(signature_json),
    })
}

/// The stored signature of a confirmed entry: what was signed and by which certificate.
fn signature_json(s: &ConfirmationSignature) -> Value {
    let signer = crate::pki::ParsedCertificate::from_der(&s.certificate).ok();
    json!({
        "digest": format!("sha256:{}", hex(&s.digest)),
        "signer_cert_sha256": hex(&crate::pki::sha256(&s.certificate)),
        "signer_subject": signer.as_ref().map(|c| crate::pki::name::display(c.subject())),
    })
}

/// 202: the write is stored and waits for a doctor.
pub fn accepted_page(e: &NewPending, json: bool) -> Page {
    if json {
        return json_page(
            StatusCode::ACCEPTED,
            json!({
                "pending_id": e.id,
                "state": "pending",
                "status_url": format!("/_hpki/pending/{}", e.id),
                "expires_at": format_time(e.expires_at),
            }),
        );
    }
    let id = escape_html(&e.id);
    let mut main = String::new();
    let _ = writeln!(
        main,
        "<p class=\"status\">202 Accepted · <code>{id}</code></p>"
    );
    main.push_str("<h1>入力は監督医師の確定待ちです</h1>\n");
    main.push_str(
        "<p>入力内容を保存しました。監督医師が確定すると、ポータルに登録されます。</p>\n",
    );
    main.push_str("<section lang=\"en\" class=\"en\"><h2>Saved: awaiting a supervising doctor's confirmation</h2>\
        <p>Your entry is stored. It will be registered with the portal when a doctor who supervises you confirms it.</p></section>\n");
    let _ = writeln!(
        main,
        "<dl><dt>受付番号 <span class=\"label-en\" lang=\"en\">Entry id</span></dt><dd><code>{id}</code></dd>\
         <dt>期限 <span class=\"label-en\" lang=\"en\">Expires</span></dt><dd>{}</dd></dl>",
        escape_html(&format_time(e.expires_at))
    );
    let _ = writeln!(
        main,
        "<p><a href=\"/_hpki/pending/{id}\">状況を確認する / See its status</a> · \
         <a href=\"/_hpki/pending\">一覧 / All my entries</a></p>"
    );
    html_page(
        StatusCode::ACCEPTED,
        "確定待ち / Awaiting confirmation",
        &main,
    )
}

pub fn list_page(viewer: &Viewer, entries: &[PendingWrite], csrf: &str, json: bool) -> Page {
    if json {
        let role = match viewer {
            Viewer::Doctor(_) => "doctor",
            Viewer::Assistant(_) => "assistant",
            Viewer::Nobody => "none",
        };
        return json_page(
            StatusCode::OK,
            json!({
                "viewer": role,
                "csrf": csrf,
                "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            }),
        );
    }
    let mut main = String::new();
    main.push_str("<p class=\"status\"><code>/_hpki/pending</code></p>\n");
    match viewer {
        Viewer::Doctor(_) => {
            main.push_str("<h1>補助者の入力（確定待ち）</h1>\n<p>あなたが監督する補助者の入力です。内容を確認して、確定または差し戻しを行ってください。</p>\n");
            main.push_str("<section lang=\"en\" class=\"en\"><h2>Entries of the assistants you supervise</h2><p>Open an entry to read it, then confirm or reject it.</p></section>\n");
        }
        Viewer::Assistant(_) => {
            main.push_str("<h1>あなたの入力</h1>\n<p>あなたが入力し、監督医師の確定を待っている（または処理済みの）入力です。</p>\n");
            main.push_str("<section lang=\"en\" class=\"en\"><h2>Your entries</h2><p>What you entered and its confirmation status.</p></section>\n");
        }
        Viewer::Nobody => {
            main.push_str("<h1>表示できる入力はありません</h1>\n<p>このカードは、台帳に監督医師または補助者として登録されていません。</p>\n");
            main.push_str("<section lang=\"en\" class=\"en\"><h2>Nothing to show</h2><p>This card is not recorded in the ledger as a supervising doctor or an assistant.</p></section>\n");
        }
    }
    if entries.is_empty() {
        main.push_str("<p>該当する入力はありません。 <span lang=\"en\">No entries.</span></p>\n");
    } else {
        main.push_str("<table><thead><tr><th>受付番号<span class=\"label-en\">Entry</span></th><th>状態<span class=\"label-en\">State</span></th><th>補助者<span class=\"label-en\">Assistant</span></th><th>内容<span class=\"label-en\">Request</span></th><th>日時<span class=\"label-en\">Entered</span></th></tr></thead><tbody>\n");
        for e in entries {
            let (ja, en) = state_label(e.state);
            let _ = writeln!(
                main,
                "<tr><td><a href=\"/_hpki/pending/{id}\"><code>{id}</code></a></td><td>{ja}<span class=\"label-en\">{en}</span></td><td>{name}<span class=\"label-en\">{aid}</span></td><td><code>{method} {path}</code></td><td>{at}</td></tr>",
                id = escape_html(&e.id),
                name = escape_untrusted(&e.assistant_name),
                aid = escape_untrusted(&e.assistant_id),
                method = escape_untrusted(&e.method),
                path = escape_untrusted(&e.path_and_query),
                at = escape_html(&format_time(e.created_at)),
            );
        }
        main.push_str("</tbody></table>\n");
    }
    html_page(StatusCode::OK, "確定待ち一覧 / Held entries", &main)
}

/// The body, shown safely: a form as a table, JSON pretty-printed, text as text.
fn render_body(e: &PendingWrite, out: &mut String) {
    if e.body.is_empty() {
        out.push_str("<p>（本文なし / no body）</p>\n");
        return;
    }
    let content_type = e.header("content-type").unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        out.push_str("<table><thead><tr><th>項目<span class=\"label-en\">Field</span></th><th>値<span class=\"label-en\">Value</span></th></tr></thead><tbody>\n");
        for (k, v) in crate::proxy::form_pairs(&e.body) {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape_untrusted(&k),
                escape_untrusted(&v)
            );
        }
        out.push_str("</tbody></table>\n");
        return;
    }
    if content_type.contains("json") {
        if let Ok(v) = serde_json::from_slice::<Value>(&e.body) {
            let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
            let _ = writeln!(out, "<pre>{}</pre>", escape_untrusted(&pretty));
            return;
        }
    }
    match body_text(&e.body) {
        Some(text) => {
            let _ = writeln!(out, "<pre>{}</pre>", escape_untrusted(text));
            if e.body.len() > SHOWN_BODY {
                let _ = writeln!(out, "<p>（先頭 {SHOWN_BODY} バイトのみ表示 / first {SHOWN_BODY} bytes shown of {}）</p>", e.body.len());
            }
        }
        None => {
            let _ = writeln!(
                out,
                "<p>バイナリデータ {} バイト（表示しません） / binary data, {} bytes (not shown)</p>",
                e.body.len(),
                e.body.len()
            );
        }
    }
}

/// One entry. `signing` is given to a supervising doctor when confirming needs their
/// signature: the page then shows the confirmation text, its digest, how to sign it, and
/// takes the signature and the signing certificate in the confirm form.
pub fn detail_page(
    e: &PendingWrite,
    viewer: &Viewer,
    can_decide: bool,
    csrf: &str,
    signing: Option<&SigningPrompt>,
    json: bool,
) -> Page {
    let decidable = can_decide && e.state.confirmable();
    let signing = signing.filter(|_| decidable);
    if json {
        let mut v = entry_json(e);
        v["can_decide"] = Value::Bool(decidable);
        if can_decide {
            v["csrf"] = Value::String(csrf.to_owned());
        }
        match signing {
            Some(SigningPrompt::Ready { text, digest_hex }) => {
                v["confirmation"] = json!({
                    "signature_required": true,
                    "text": text,
                    "digest_sha256": digest_hex,
                    "text_url": confirmation_text_url(&e.id),
                    "sign_command": sign_command(digest_hex),
                    "fields": ["signature", "certificate"],
                });
            }
            Some(SigningPrompt::Unsignable(why)) => {
                v["confirmation"] = json!({ "signature_required": true, "error": why });
            }
            None => {}
        }
        return json_page(StatusCode::OK, v);
    }
    let (ja, en) = state_label(e.state);
    let id = escape_html(&e.id);
    let mut main = String::new();
    let _ = writeln!(
        main,
        "<p class=\"status\"><a href=\"/_hpki/pending\">一覧 / list</a> · <code>{id}</code></p>"
    );
    let _ = writeln!(main, "<h1>補助者の入力: {ja}</h1>");
    let _ = writeln!(
        main,
        "<section lang=\"en\" class=\"en\"><h2>Assistant's entry: {en}</h2></section>"
    );
    main.push_str("<dl>\n");
    let mut row = |ja: &str, en: &str, value: String| {
        let _ = writeln!(
            main,
            "<dt>{ja}<span class=\"label-en\" lang=\"en\">{en}</span></dt><dd>{value}</dd>"
        );
    };
    row(
        "補助者",
        "Entered by",
        format!(
            "{} <code>{}</code>",
            escape_untrusted(&e.assistant_name),
            escape_untrusted(&e.assistant_id)
        ),
    );
    row(
        "入力日時",
        "Entered at",
        escape_html(&format_time(e.created_at)),
    );
    row(
        "操作",
        "Request",
        format!(
            "<code>{} {}</code>",
            escape_untrusted(&e.method),
            escape_untrusted(&e.path_and_query)
        ),
    );
    if let Some(ct) = e.header("content-type") {
        row(
            "形式",
            "Content type",
            format!("<code>{}</code>", escape_untrusted(ct)),
        );
    }
    row("期限", "Expires", escape_html(&format_time(e.expires_at)));
    if let Some(c) = &e.confirmer {
        row(
            "処理した医師",
            "Decided by",
            format!(
                "{} <code>{}</code>",
                escape_untrusted(&c.name),
                escape_untrusted(&c.hpki_id)
            ),
        );
    }
    if let Some(at) = e.decided_at {
        row("処理日時", "Decided at", escape_html(&format_time(at)));
    }
    if let Some(r) = &e.reject_reason {
        row("差し戻し理由", "Reason for rejection", escape_untrusted(r));
    }
    if let Some(s) = e.upstream_status {
        row(
            "ポータルの応答",
            "Portal answered",
            format!("<code>{s}</code>"),
        );
    }
    if let Some(err) = &e.last_error {
        row("エラー", "Error", escape_untrusted(err));
    }
    main.push_str("</dl>\n<h2>入力内容 <span lang=\"en\" class=\"en\">Content</span></h2>\n");
    render_body(e, &mut main);
    if let Some(answer) = &e.upstream_body {
        if !answer.is_empty() {
            main.push_str("<details><summary>ポータルの応答内容 / The portal's answer</summary>\n");
            match std::str::from_utf8(answer) {
                Ok(t) => {
                    let _ = writeln!(main, "<pre>{}</pre>", escape_untrusted(t));
                }
                Err(_) => {
                    let _ = writeln!(main, "<p>binary, {} bytes</p>", answer.len());
                }
            }
            main.push_str("</details>\n");
        }
    }
    if decidable {
        let retry = e.state == PendingState::Failed;
        let csrf = escape_html(csrf);
        let button = if retry {
            "再送信する / Retry delivery"
        } else {
            "確定する / Confirm"
        };
        match signing {
            None => {
                let _ = writeln!(
                    main,
                    "<form method=\"post\" action=\"/_hpki/pending/{id}/confirm\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <button type=\"submit\">{button}</button></form>"
                );
            }
            Some(SigningPrompt::Unsignable(why)) => {
                let _ = writeln!(
                    main,
                    "<p>この入力には署名できないため確定できません。差し戻してください。 \
                     <span lang=\"en\">This entry cannot be signed, so it cannot be confirmed: reject it.</span></p>\
                     <p><code>{}</code></p>",
                    escape_html(why)
                );
            }
            Some(SigningPrompt::Ready { text, digest_hex }) => {
                render_signing(&e.id, text, digest_hex, &mut main);
                let _ = writeln!(
                    main,
                    "<form method=\"post\" action=\"/_hpki/pending/{id}/confirm\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <p><label>署名（base64） / Signature (base64)<br>\
                     <textarea name=\"signature\" required rows=\"5\" cols=\"66\" spellcheck=\"false\"></textarea></label></p>\
                     <p><label>署名用証明書（PEM または base64 DER） / Signing certificate (PEM or base64 DER)<br>\
                     <textarea name=\"certificate\" required rows=\"10\" cols=\"66\" spellcheck=\"false\"></textarea></label></p>\
                     <button type=\"submit\">署名して{button}</button></form>"
                );
            }
        }
        let _ = writeln!(
            main,
            "<form method=\"post\" action=\"/_hpki/pending/{id}/reject\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>差し戻し理由 / Reason <input type=\"text\" name=\"reason\" required maxlength=\"1000\"></label> \
             <button type=\"submit\">差し戻す / Reject</button></form>"
        );
    } else if matches!(viewer, Viewer::Doctor(_)) && !can_decide {
        main.push_str("<p>この入力を処理する権限はありません。 <span lang=\"en\">You cannot decide this entry.</span></p>\n");
    }
    html_page(StatusCode::OK, &format!("{ja} / {en}"), &main)
}

/// The confirmation text, its digest and how to sign it (the doctor's workstation has
/// `hpki-card`; the page runs nothing).
fn render_signing(id: &str, text: &str, digest_hex: &str, out: &mut String) {
    let _ = writeln!(
        out,
        "<h2>確定テキストへの電子署名 <span lang=\"en\" class=\"en\">Sign the confirmation</span></h2>\
         <p>この入力を確定するには、次の確定テキストにHPKI署名用カードで電子署名してください。\
         署名は入力内容（本文はSHA-256）と、あなたのHPKI IDを確定します。</p>\
         <p lang=\"en\" class=\"en\">To confirm this entry, sign the confirmation text below with your HPKI signing card. \
         The signature commits to the entry (its body by SHA-256) and to your HPKI id.</p>\
         <pre>{}</pre>\
         <dl><dt>SHA-256<span class=\"label-en\" lang=\"en\">digest of the text</span></dt><dd><code>{}</code></dd></dl>\
         <p><a href=\"{}\" download>確定テキストをダウンロード / Download the confirmation text</a></p>\
         <ol><li>署名する / Sign: <code>{}</code></li>\
         <li>署名用証明書を表示する / Show your signing certificate: <code>hpki-card certs --pem</code></li>\
         <li>署名（base64）と署名用証明書を下のフォームに貼り付けて確定する / Paste the signature (base64) and the signing certificate below, then confirm</li></ol>",
        escape_untrusted(text),
        escape_html(digest_hex),
        escape_html(&confirmation_text_url(id)),
        escape_html(&sign_command(digest_hex)),
    );
}

// ---------------------------------------------------------------------------------------
// Emergency access
// ---------------------------------------------------------------------------------------

pub fn grant_json(g: &EmergencyGrant) -> Value {
    json!({
        "id": g.id,
        "doctor_hpki_id": g.doctor.hpki_id,
        "doctor_name": g.doctor_name,
        "reason": g.reason,
        "patient_ref": g.patient_ref,
        "started_at": format_time(g.started_at),
        "expires_at": format_time(g.expires_at),
        "ended_at": g.ended_at.map(format_time),
    })
}

/// The emergency page: the running grant (with an end button) or the form to start one.
pub fn emergency_page(
    status: StatusCode,
    active: Option<&EmergencyGrant>,
    allowed: bool,
    csrf: &str,
    minutes: u64,
    json: bool,
) -> Page {
    if json {
        return json_page(
            status,
            json!({
                "active": active.map(grant_json),
                "allowed": allowed,
                "csrf": csrf,
                "duration_minutes": minutes,
            }),
        );
    }
    let csrf = escape_html(csrf);
    let mut main = String::new();
    main.push_str("<p class=\"status\"><code>/_hpki/emergency</code></p>\n");
    main.push_str("<h1>緊急時の閲覧（ブレイクグラス）</h1>\n");
    main.push_str(
        "<section lang=\"en\" class=\"en\"><h2>Emergency access (break-glass)</h2></section>\n",
    );
    match active {
        Some(g) => {
            let _ = writeln!(
                main,
                "<p>緊急アクセスが有効です（<code>{}</code>、{} まで）。すべての操作が記録されます。事後に患者の同意取得が必要です。</p>\
                 <p lang=\"en\" class=\"en\">Emergency access is active until {}. Everything you do is recorded; patient consent must be obtained afterwards.</p>\
                 <dl><dt>理由<span class=\"label-en\">Reason</span></dt><dd>{}</dd><dt>患者<span class=\"label-en\">Patient</span></dt><dd>{}</dd></dl>\
                 <form method=\"post\" action=\"/_hpki/emergency/{}/end\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\">緊急アクセスを終了する / End emergency access</button></form>",
                escape_html(&g.id),
                escape_html(&format_time(g.expires_at)),
                escape_html(&format_time(g.expires_at)),
                escape_untrusted(&g.reason),
                escape_untrusted(g.patient_ref.as_deref().unwrap_or("-")),
                escape_html(&g.id),
            );
        }
        None if allowed => {
            let _ = writeln!(
                main,
                "<p>患者の事前同意なしに閲覧する必要がある緊急時のみ使用してください。理由は記録され、事後に同意取得の確認が行われます。有効時間は {minutes} 分です。</p>\
                 <p lang=\"en\" class=\"en\">Use only in an emergency that requires access without the patient's prior consent. The reason is recorded and consent is followed up afterwards. Access lasts {minutes} minutes.</p>\
                 <form method=\"post\" action=\"/_hpki/emergency\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <p><label>理由（必須） / Reason (required)<br><textarea name=\"reason\" required maxlength=\"1000\" rows=\"3\" cols=\"50\"></textarea></label></p>\
                 <p><label>患者ID（任意） / Patient reference (optional)<br><input type=\"text\" name=\"patient_ref\" maxlength=\"200\"></label></p>\
                 <button type=\"submit\">緊急アクセスを開始する / Start emergency access</button></form>"
            );
        }
        None => {
            main.push_str("<p>あなたの資格では緊急アクセスを利用できません。 <span lang=\"en\">Your profession may not use emergency access.</span></p>\n");
        }
    }
    html_page(status, "緊急アクセス / Emergency access", &main)
}
