//! The pages the gateway itself answers with: denial pages (HTML for browsers, JSON for
//! programs) and `/_hpki/whoami`.
//!
//! A refused doctor should see what happened and what to do, in Japanese first and in
//! English, never a bare status line; a portal or script should get the same decision as
//! JSON. Both carry the stable snake_case reason code (the one in the audit record) and the
//! request id, so a support desk can find the audit record from a screenshot.
//!
//! Everything here is pure string building: no I/O, no clock, no headers. The caller turns
//! a [`Page`] into a response (see [`Page::into_response`] for the headers it should carry).
//! Certificate names reach these pages (in `detail` and in whoami identities) and they are
//! chosen by whoever obtained the certificate, so every value that is not a constant of
//! this module is escaped before it reaches HTML.

use std::fmt::Write as _;

use http::StatusCode;

use crate::pki::Reason;

/// `Content-Type` of HTML pages.
pub const CONTENT_TYPE_HTML: &str = "text/html; charset=utf-8";
/// `Content-Type` of JSON bodies.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Why the gateway refuses, at any layer. The codes are public contract (audit log,
/// portals, acceptance tests): a variant's code never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The certificate or its path failed validation; code and status come from `pki`.
    Certificate(Reason),
    /// No card presented on a route that needs one.
    ClientCertificateRequired,
    /// The route needs a profession (hcRole) and the certificate carries none.
    NoHcRole,
    /// The certificate's hcRole is not among the route's allowed roles.
    RoleNotAllowed,
    /// The certificate's kind is not allowed on the route, e.g. an organization (clinic)
    /// card on a doctors-only route.
    KindNotAllowed,
    /// No route matches the host and path.
    NoRoute,
    /// The request (headers or body) exceeds the gateway's limits.
    RequestTooLarge,
    /// The upstream portal could not be reached or answered with garbage.
    UpstreamUnavailable,
    /// The upstream portal did not answer in time.
    UpstreamTimeout,
    /// The request is malformed (bad header, bad path...).
    BadRequest,
    /// An organization (clinic) card whose current holder the ledger does not name.
    AssistantNotInLedger,
    /// The store (ledger, held writes) cannot be reached; nothing was recorded.
    StoreUnavailable,
    /// A doctor acting on a held write of an assistant they do not supervise.
    NotSupervisor,
    /// No held write with that id (or not visible to this card).
    PendingNotFound,
    /// The held write was already decided (confirmed, rejected, expired, or being
    /// forwarded by another doctor).
    PendingAlreadyDecided,
    /// A form post without the page's anti-forgery token (or from another site).
    CsrfFailed,
    /// The audit log cannot record the request, and the gateway does not serve
    /// unrecorded (`audit.on_failure = "refuse"`).
    AuditUnavailable,
    /// A session-end token that is malformed, not issued by this gateway, expired or
    /// already used.
    SessionTokenInvalid,
    /// Confirming needs the doctor's signature (`confirm.require_signature`) and the form
    /// carries no signature or no signing certificate.
    SignatureRequired,
    /// The signature does not verify over the confirmation text rebuilt from the stored
    /// entry (a tampered entry, another text, another key), or the signature or
    /// certificate cannot be read.
    SignatureInvalid,
    /// The signing certificate does not validate for signing against the signing profile.
    SigningCertUntrusted,
    /// The signing certificate (or a CA above it) is revoked.
    SigningCertRevoked,
    /// The signing certificate's revocation status could not be established and the
    /// signing profile's `revocation.on_unavailable` denies.
    SigningCertStatusUnknown,
    /// The signing certificate is not the logged-in doctor's (its HPKI id differs).
    SignerNotDoctor,
}

/// The four user-facing texts of one denial.
#[derive(Clone, Copy)]
struct Texts {
    title_ja: &'static str,
    advice_ja: &'static str,
    title_en: &'static str,
    advice_en: &'static str,
}

// Shared advice for the path problems a user cannot fix and a CA must (mis-issued
// hierarchies): one wording, so they read the same whichever rule broke.
const ADVICE_ISSUANCE_JA: &str = "証明書の発行のされ方に問題があります。カードの発行元（認証局）またはシステム管理者にお問い合わせください。";
const ADVICE_ISSUANCE_EN: &str = "There is a problem with how the certificate was issued. Contact the certification authority that issued your card, or your system administrator.";
// Shared advice for "this certificate on the card is the wrong one": the usual cure is
// picking the other certificate in the browser's selection dialog.
const ADVICE_CHOOSE_AUTH_JA: &str = "カードの認証用証明書を使用してください。ブラウザーの証明書選択画面で「認証用」の証明書を選んでください。";
const ADVICE_CHOOSE_AUTH_EN: &str = "Use the authentication certificate on your card: choose the authentication (認証用) certificate when the browser asks.";

impl Denial {
    /// Every gateway-level (non-certificate) denial, in code order of [`Self::GATEWAY_CODES`].
    pub const GATEWAY: [Denial; 23] = [
        Denial::ClientCertificateRequired,
        Denial::NoHcRole,
        Denial::RoleNotAllowed,
        Denial::KindNotAllowed,
        Denial::NoRoute,
        Denial::RequestTooLarge,
        Denial::UpstreamUnavailable,
        Denial::UpstreamTimeout,
        Denial::BadRequest,
        Denial::AssistantNotInLedger,
        Denial::StoreUnavailable,
        Denial::NotSupervisor,
        Denial::PendingNotFound,
        Denial::PendingAlreadyDecided,
        Denial::CsrfFailed,
        Denial::AuditUnavailable,
        Denial::SessionTokenInvalid,
        Denial::SignatureRequired,
        Denial::SignatureInvalid,
        Denial::SigningCertUntrusted,
        Denial::SigningCertRevoked,
        Denial::SigningCertStatusUnknown,
        Denial::SignerNotDoctor,
    ];

    /// Every non-certificate code, for docs checks. Computed from [`Self::GATEWAY`] so the
    /// two lists cannot drift apart.
    pub const GATEWAY_CODES: [&'static str; 23] = {
        let mut codes = [""; 23];
        let mut i = 0;
        while i < codes.len() {
            codes[i] = Denial::GATEWAY[i].code();
            i += 1;
        }
        codes
    };

    /// Every denial: each certificate [`Reason`] then each gateway denial.
    pub fn all() -> impl Iterator<Item = Denial> {
        Reason::ALL
            .into_iter()
            .map(Denial::Certificate)
            .chain(Denial::GATEWAY)
    }

    /// The stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match *self {
            Denial::Certificate(reason) => reason.code(),
            Denial::ClientCertificateRequired => "client_certificate_required",
            Denial::NoHcRole => "no_hcrole",
            Denial::RoleNotAllowed => "role_not_allowed",
            Denial::KindNotAllowed => "kind_not_allowed",
            Denial::NoRoute => "no_route",
            Denial::RequestTooLarge => "request_too_large",
            Denial::UpstreamUnavailable => "upstream_unavailable",
            Denial::UpstreamTimeout => "upstream_timeout",
            Denial::BadRequest => "bad_request",
            Denial::AssistantNotInLedger => "assistant_not_in_ledger",
            Denial::StoreUnavailable => "store_unavailable",
            Denial::NotSupervisor => "not_supervisor",
            Denial::PendingNotFound => "pending_not_found",
            Denial::PendingAlreadyDecided => "pending_already_decided",
            Denial::CsrfFailed => "csrf_failed",
            Denial::AuditUnavailable => "audit_unavailable",
            Denial::SessionTokenInvalid => "session_token_invalid",
            Denial::SignatureRequired => "signature_required",
            Denial::SignatureInvalid => "signature_invalid",
            Denial::SigningCertUntrusted => "signing_cert_untrusted",
            Denial::SigningCertRevoked => "signing_cert_revoked",
            Denial::SigningCertStatusUnknown => "signing_cert_status_unknown",
            Denial::SignerNotDoctor => "signer_not_doctor",
        }
    }

    /// The code back to its denial (certificate codes included).
    pub fn from_code(code: &str) -> Option<Denial> {
        Denial::all().find(|d| d.code() == code)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            // 403 rather than 401 for a missing card: 401 promises a WWW-Authenticate
            // challenge the browser could answer, and a client certificate is not one.
            Denial::Certificate(_)
            | Denial::ClientCertificateRequired
            | Denial::NoHcRole
            | Denial::RoleNotAllowed
            | Denial::KindNotAllowed
            | Denial::AssistantNotInLedger
            | Denial::NotSupervisor
            | Denial::CsrfFailed
            | Denial::SessionTokenInvalid
            | Denial::SignatureInvalid
            | Denial::SigningCertUntrusted
            | Denial::SigningCertRevoked
            | Denial::SignerNotDoctor => StatusCode::FORBIDDEN,
            Denial::StoreUnavailable
            | Denial::AuditUnavailable
            | Denial::SigningCertStatusUnknown => StatusCode::SERVICE_UNAVAILABLE,
            Denial::SignatureRequired => StatusCode::BAD_REQUEST,
            Denial::PendingNotFound => StatusCode::NOT_FOUND,
            Denial::PendingAlreadyDecided => StatusCode::CONFLICT,
            Denial::NoRoute => StatusCode::NOT_FOUND,
            Denial::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Denial::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Denial::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Denial::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    pub fn title_ja(&self) -> &'static str {
        self.texts().title_ja
    }

    pub fn title_en(&self) -> &'static str {
        self.texts().title_en
    }

    pub fn advice_ja(&self) -> &'static str {
        self.texts().advice_ja
    }

    pub fn advice_en(&self) -> &'static str {
        self.texts().advice_en
    }

    // Titles say what happened in the reader's terms (the card, the page, the portal), not
    // in X.509 terms; advice says what the reader can do, and who to ask when they cannot.
    fn texts(&self) -> Texts {
        match *self {
            Denial::Certificate(reason) => reason_texts(reason),
            Denial::ClientCertificateRequired => Texts {
                title_ja: "HPKIカードを挿入してください",
                // Browsers never offer an expired or a signing-only certificate, so a card
                // that is inserted but unusable for login ends up here too.
                advice_ja: "カードリーダーにHPKIカードを挿入し、ブラウザーを再読み込みしてください。カードを挿入しているのにこの画面になる場合は、認証用証明書の有効期限が切れているか、署名用の証明書しか選べない状態です（ブラウザーはこれらを提示しません）。hpki-card doctor でカードを確認してください。",
                title_en: "Insert your HPKI card",
                advice_en: "Insert your HPKI card into the reader and reload the page. If your card is inserted and you still see this page, its authentication certificate has expired or only a signing certificate is available: browsers do not offer those. Check the card with hpki-card doctor.",
            },
            Denial::NoHcRole => Texts {
                title_ja: "この証明書には資格情報（hcRole）がありません",
                advice_ja: "このページは、医師・薬剤師などの資格情報が記録されたHPKIカードでのみご利用いただけます。資格情報が記録されたご本人のカードの認証用証明書でログインしてください。",
                title_en: "This certificate does not carry a professional qualification (hcRole)",
                advice_en: "This page is only available with an HPKI card that records a healthcare qualification, such as doctor or pharmacist. Log in with the authentication certificate of your own card that records one.",
            },
            Denial::RoleNotAllowed => Texts {
                title_ja: "このページはあなたの資格では利用できません",
                advice_ja: "このページは、特定の資格（例：医師）をお持ちの方のみご利用いただけます。利用が必要な場合は、システム管理者にお問い合わせください。",
                title_en: "This page is not available to your profession",
                advice_en: "Only certain professions (for example, doctors) may use this page. If you need access, contact your system administrator.",
            },
            Denial::KindNotAllowed => Texts {
                title_ja: "この種類のカードではこのページを利用できません",
                advice_ja: "このページでは、お使いの種類のカード（個人用／組織用）は利用できません。たとえば医療機関（組織）のカードではなく、ご本人のカードでログインしてください。ご不明な点はシステム管理者にお問い合わせください。",
                title_en: "This page cannot be used with this kind of card",
                advice_en: "This page does not accept your kind of card (personal or organization). For example, log in with your own personal card rather than your clinic's card. If you are unsure, contact your system administrator.",
            },
            Denial::NoRoute => Texts {
                title_ja: "ページが見つかりません",
                advice_ja: "アドレス（URL）に誤りがないかご確認ください。ブックマークから開いた場合は、ポータルのトップページからもう一度お進みください。",
                title_en: "Page not found",
                advice_en: "Check the address (URL). If you opened a bookmark, start again from the portal's home page.",
            },
            Denial::RequestTooLarge => Texts {
                title_ja: "送信データが大きすぎます",
                advice_ja: "一度に送信できるデータの上限を超えています。ファイルを小さくするか、分けて送信してください。",
                title_en: "The data you sent is too large",
                advice_en: "The request exceeds the size limit. Make the file smaller or send it in several parts.",
            },
            Denial::UpstreamUnavailable => Texts {
                title_ja: "ポータルに接続できません",
                advice_ja: "しばらくしてから再度お試しください。問題が続く場合は、システム管理者にお問い合わせください。",
                title_en: "The portal cannot be reached",
                advice_en: "Please try again in a few minutes. If the problem continues, contact your system administrator.",
            },
            // The request may have reached the portal before the timeout: warn against a
            // blind resubmission, which could record a prescription or note twice.
            Denial::UpstreamTimeout => Texts {
                title_ja: "ポータルから時間内に応答がありません",
                advice_ja: "しばらくしてから再度お試しください。入力内容を送信していた場合は、二重登録を避けるため、再送信の前に登録済みでないかをご確認ください。",
                title_en: "The portal did not respond in time",
                advice_en: "Please try again shortly. If you were submitting a form, check whether it was saved before sending it again, to avoid a duplicate entry.",
            },
            Denial::BadRequest => Texts {
                title_ja: "リクエストを処理できません",
                advice_ja: "ページを再読み込みしてから、もう一度お試しください。解決しない場合は、システム管理者にお問い合わせください。",
                title_en: "The request could not be processed",
                advice_en: "Reload the page and try again. If the problem persists, contact your system administrator.",
            },
            Denial::AssistantNotInLedger => Texts {
                title_ja: "このカードの利用者が台帳に登録されていません",
                advice_ja: "医療機関（組織）のカードは、誰が使っているかを台帳に登録してから利用できます。医療機関の管理者に、このカードの利用者の登録を依頼してください。",
                title_en: "Nobody is recorded in the ledger as holding this card",
                advice_en: "A clinic (organization) card can be used only once the clinic's ledger records who holds it. Ask your clinic's administrator to register you as this card's holder.",
            },
            Denial::StoreUnavailable => Texts {
                title_ja: "現在、記録を保存できません",
                advice_ja: "ゲートウェイのデータベースに接続できないため、処理を行いませんでした。入力内容は保存されていません。しばらくしてから再度お試しください。問題が続く場合は、システム管理者にお問い合わせください。",
                title_en: "Records cannot be saved right now",
                advice_en: "The gateway cannot reach its database, so nothing was done and your input was not saved. Please try again in a few minutes; if the problem continues, contact your system administrator.",
            },
            Denial::NotSupervisor => Texts {
                title_ja: "この補助者の入力を確定する権限がありません",
                advice_ja: "確定操作は、台帳でこの補助者の監督医師として登録された医師のみが行えます。登録が必要な場合は、医療機関の管理者にお問い合わせください。",
                title_en: "You do not supervise this assistant",
                advice_en: "Only a doctor recorded in the ledger as this assistant's supervisor may confirm or reject their entries. Ask your clinic's administrator if you should be one.",
            },
            Denial::PendingNotFound => Texts {
                title_ja: "確定待ちの入力が見つかりません",
                advice_ja: "指定された入力は存在しないか、あなたには表示されません。確定待ち一覧からもう一度お進みください。",
                title_en: "Held entry not found",
                advice_en: "The entry does not exist or is not visible to you. Start again from the list of entries awaiting confirmation.",
            },
            Denial::PendingAlreadyDecided => Texts {
                title_ja: "この入力はすでに処理されています",
                advice_ja: "別の医師が確定・差し戻しを行ったか、有効期限が切れています。一覧を再読み込みして、現在の状態をご確認ください。",
                title_en: "This entry has already been decided",
                advice_en: "Another doctor confirmed or rejected it, or it expired. Reload the list to see its current state.",
            },
            Denial::CsrfFailed => Texts {
                title_ja: "フォームの送信を確認できませんでした",
                advice_ja: "別のサイトから送信されたフォームは受け付けません。このページを開き直してから、もう一度操作してください。",
                title_en: "The form submission could not be verified",
                advice_en: "Open the page again and repeat the action. Forms sent from another site are not accepted.",
            },
            Denial::AuditUnavailable => Texts {
                title_ja: "現在、アクセス記録を保存できません",
                advice_ja: "アクセスの記録（監査ログ）を保存できないため、処理を行いませんでした。しばらくしてから再度お試しください。問題が続く場合は、システム管理者にお問い合わせください。",
                title_en: "Access cannot be recorded right now",
                advice_en: "The gateway cannot write its audit log, so nothing was done. Please try again in a few minutes; if the problem continues, contact your system administrator.",
            },
            Denial::SessionTokenInvalid => Texts {
                title_ja: "セッション終了の要求を受け付けられません",
                advice_ja: "カードリーダーエージェントの終了要求が無効、期限切れ、または使用済みです。カードを挿入してポータルにログインし直すと、新しい要求が登録されます。",
                title_en: "The session-end request cannot be accepted",
                advice_en: "The card-reader agent's request is invalid, expired or was already used. Insert the card and log in to the portal again to register a new one.",
            },
            Denial::SignatureRequired => Texts {
                title_ja: "確定には署名用カードによる電子署名が必要です",
                advice_ja: "この確定には、確定テキストへのHPKI署名用証明書による電子署名が必要です。確定ページに表示されたコマンドで署名し、署名と署名用証明書をフォームに貼り付けてから、もう一度確定してください。",
                title_en: "This confirmation needs your signature with your HPKI signing card",
                advice_en: "Confirming needs an electronic signature over the confirmation text, made with your HPKI signing certificate. Sign it with the command shown on the entry's page, paste the signature and the signing certificate into the form, and confirm again.",
            },
            Denial::SignatureInvalid => Texts {
                title_ja: "電子署名を検証できません",
                advice_ja: "署名が確定テキストと一致しないか、貼り付けた署名用証明書の鍵で作られていません。署名の後に入力内容が変更された可能性もあります。確定ページを開き直し、いま表示されている確定テキストに改めて署名してください。",
                title_en: "The signature does not verify",
                advice_en: "The signature does not match the confirmation text, or was not made with the key of the signing certificate you pasted; the entry may also have changed after you signed. Open the entry again and sign the confirmation text it shows now.",
            },
            Denial::SigningCertUntrusted => Texts {
                title_ja: "署名用証明書を確認できません",
                advice_ja: "署名に使った証明書は、このネットワークで認められたHPKI署名用証明書ではありません（認証用証明書、有効期限切れ、発行元が不明など）。カードの署名用証明書で署名し、その証明書を貼り付けてください。ご不明な点はシステム管理者にお問い合わせください。",
                title_en: "The signing certificate is not accepted",
                advice_en: "The certificate you signed with is not an HPKI signing certificate this network accepts (an authentication certificate, an expired one, or one from an unknown issuer). Sign with your card's signing certificate and paste that certificate. If you are unsure, contact your system administrator.",
            },
            Denial::SigningCertRevoked => Texts {
                title_ja: "署名用証明書が失効しています",
                advice_ja: "署名に使った証明書は失効しているため、確定は行われませんでした。カードの発行元（認証局）にお問い合わせください。",
                title_en: "Your signing certificate has been revoked",
                advice_en: "The certificate you signed with is revoked, so nothing was confirmed. Contact the certification authority that issued your card.",
            },
            Denial::SigningCertStatusUnknown => Texts {
                title_ja: "署名用証明書の失効確認ができませんでした",
                advice_ja: "署名用証明書が失効していないことを確認できなかったため、確定を行いませんでした。しばらくしてから再度お試しください。続く場合はシステム管理者にお問い合わせください。",
                title_en: "The signing certificate's revocation status could not be checked",
                advice_en: "The gateway could not confirm that your signing certificate is not revoked, so nothing was confirmed. Try again in a while; if it persists, contact your system administrator.",
            },
            Denial::SignerNotDoctor => Texts {
                title_ja: "署名者がログイン中の医師と一致しません",
                advice_ja: "署名用証明書のHPKI IDが、ログインしている医師のものと異なります。ご本人の署名用カードで署名してください。",
                title_en: "The signer is not the doctor who is logged in",
                advice_en: "The HPKI id in the signing certificate differs from that of the doctor who is logged in. Sign with your own signing card.",
            },
        }
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl From<Reason> for Denial {
    fn from(reason: Reason) -> Self {
        Denial::Certificate(reason)
    }
}

// Exhaustive on purpose (no `_` arm): a new `Reason` does not compile until it has texts.
fn reason_texts(reason: Reason) -> Texts {
    match reason {
        Reason::MalformedCertificate => Texts {
            title_ja: "カードの証明書を読み取れません",
            advice_ja: "証明書の形式に誤りがあります。カードの発行元（認証局）にお問い合わせください。その際、下記のリクエストIDをお伝えください。",
            title_en: "Your card's certificate could not be read",
            advice_en: "The certificate is not correctly formed. Contact the certification authority that issued your card and quote the request ID below.",
        },
        Reason::UntrustedIssuer => Texts {
            title_ja: "この証明書の発行元はこのネットワークで信頼されていません",
            advice_ja: "このネットワークで利用が認められている認証局が発行したHPKIカードをお使いください。ご不明な点はシステム管理者にお問い合わせください。",
            title_en: "This certificate's issuer is not trusted on this network",
            advice_en: "Use an HPKI card issued by a certification authority this network accepts. If you are unsure, contact your system administrator.",
        },
        Reason::BadSignature => Texts {
            title_ja: "証明書の署名を確認できません",
            advice_ja: "証明書が改変されているか、正しく発行されていない可能性があります。カードの発行元（認証局）またはシステム管理者にお問い合わせください。",
            title_en: "The certificate's signature could not be verified",
            advice_en: "The certificate may have been altered or incorrectly issued. Contact your certification authority or your system administrator.",
        },
        Reason::UnsupportedSignatureAlgorithm => Texts {
            title_ja: "この証明書の暗号方式は利用できません",
            advice_ja: "安全性の低い暗号方式（SHA-1や短い鍵など）の証明書は受け付けていません。現在の方式で発行されたカードへの更新について、発行元（認証局）にご相談ください。",
            title_en: "This certificate uses a cryptographic algorithm that is not accepted",
            advice_en: "Certificates using weak algorithms (such as SHA-1 or short keys) are refused. Ask your certification authority about a card issued with current algorithms.",
        },
        Reason::CertExpired => Texts {
            title_ja: "カードの証明書の有効期限が切れています",
            advice_ja: "発行元（認証局）に更新を申請してください。",
            title_en: "Your card's certificate has expired",
            advice_en: "Apply to your certification authority for a renewed card.",
        },
        // The gateway's clock decides, not the user's PC: if the start date has passed,
        // the operator must look at the server, so the advice points to the administrator.
        Reason::CertNotYetValid => Texts {
            title_ja: "カードの証明書はまだ有効期間が始まっていません",
            advice_ja: "証明書の有効期間の開始日になってから、もう一度お試しください。開始日をすでに過ぎている場合は、システム管理者にお問い合わせください。",
            title_en: "Your card's certificate is not valid yet",
            advice_en: "Try again once the certificate's validity period has begun. If that date has already passed, contact your system administrator.",
        },
        Reason::UnsupportedCriticalExtension => Texts {
            title_ja: "この証明書には処理できない重要な拡張情報が含まれています",
            advice_ja: "安全のため、内容をすべて確認できない証明書は受け付けていません。カードの発行元（認証局）またはシステム管理者にお問い合わせください。",
            title_en: "This certificate contains a critical extension the gateway cannot process",
            advice_en: "For safety, certificates whose contents cannot be fully checked are refused. Contact your certification authority or your system administrator.",
        },
        Reason::PolicyNotAccepted => Texts {
            title_ja: "この種類の証明書ではログインできません",
            advice_ja: "このネットワークで認められている種類のHPKIカードの、認証用証明書でログインしてください。お使いのカードの種類をご確認ください。",
            title_en: "This type of certificate cannot be used to log in",
            advice_en: "Log in with the authentication certificate of an HPKI card of a type this network accepts. Please check which kind of card you are using.",
        },
        Reason::PathTooLong => Texts {
            title_ja: "証明書の発行元の階層が許容範囲を超えています",
            advice_ja: ADVICE_ISSUANCE_JA,
            title_en: "The certificate's chain of issuers is longer than allowed",
            advice_en: ADVICE_ISSUANCE_EN,
        },
        Reason::NotACa => Texts {
            title_ja: "証明書の発行元が認証局として認められていません",
            advice_ja: ADVICE_ISSUANCE_JA,
            title_en: "An issuer of this certificate is not a certification authority",
            advice_en: ADVICE_ISSUANCE_EN,
        },
        Reason::CaKeyUsageMissingCertSign => Texts {
            title_ja: "証明書の発行元に証明書を発行する権限がありません",
            advice_ja: ADVICE_ISSUANCE_JA,
            title_en: "An issuer of this certificate is not permitted to sign certificates",
            advice_en: ADVICE_ISSUANCE_EN,
        },
        Reason::NameConstraintViolation => Texts {
            title_ja: "証明書の名前が発行元の許可範囲外です",
            advice_ja: ADVICE_ISSUANCE_JA,
            title_en: "A name in this certificate is outside what its issuer may certify",
            advice_en: ADVICE_ISSUANCE_EN,
        },
        Reason::EkuNotAllowed => Texts {
            title_ja: "この証明書はログイン用途での使用が許可されていません",
            advice_ja: "カードの認証用証明書を選んでください。それでもこのページが表示される場合は、カードの発行元（認証局）にお問い合わせください。",
            title_en: "This certificate is not allowed to be used for logging in",
            advice_en: "Choose your card's authentication certificate. If this page appears again, contact your certification authority.",
        },
        Reason::PathTooComplex => Texts {
            title_ja: "証明書を確認できませんでした（処理の上限に達しました）",
            advice_ja: "証明書の構成が複雑すぎるため、確認を中止しました。もう一度お試しいただき、解決しない場合はシステム管理者にお問い合わせください。",
            title_en: "The certificate could not be verified (processing limit reached)",
            advice_en: "Verification stopped because the certificate chain was too complex. Try again; if the problem persists, contact your system administrator.",
        },
        Reason::SigningCertNotForLogin => Texts {
            title_ja: "署名用の証明書ではログインできません",
            advice_ja: ADVICE_CHOOSE_AUTH_JA,
            title_en: "A signing certificate cannot be used to log in",
            advice_en: ADVICE_CHOOSE_AUTH_EN,
        },
        Reason::KeyUsageNotForLogin => Texts {
            title_ja: "この証明書はログイン用に発行されていません",
            advice_ja: ADVICE_CHOOSE_AUTH_JA,
            title_en: "This certificate was not issued for logging in",
            advice_en: ADVICE_CHOOSE_AUTH_EN,
        },
        Reason::CaCertNotForLogin => Texts {
            title_ja: "認証局の証明書ではログインできません",
            advice_ja: "認証局の証明書ではなく、カードに記録されたご本人の認証用証明書を選んでください。",
            title_en: "A certification authority certificate cannot be used to log in",
            advice_en: "Choose your own authentication certificate from your card, not a certification authority certificate.",
        },
        Reason::CertRevoked => Texts {
            title_ja: "このカードの証明書は失効しています",
            advice_ja: "紛失・盗難・退職などにより証明書が失効しています。心当たりがない場合は、カードの発行元（認証局）またはシステム管理者にお問い合わせください。",
            title_en: "This card's certificate has been revoked",
            advice_en: "The certificate was revoked (lost or stolen card, leaving the institution...). If you do not expect this, contact your certification authority or your system administrator.",
        },
        Reason::RevocationUnavailable => Texts {
            title_ja: "証明書の失効確認ができませんでした",
            advice_ja: "証明書が失効していないことを確認できなかったため、安全のためログインを止めています。しばらくしてから再度お試しください。続く場合はシステム管理者にお問い合わせください。",
            title_en: "The certificate's revocation status could not be checked",
            advice_en: "The gateway could not confirm that your certificate is not revoked, so login is stopped for safety. Try again in a while; if it persists, contact your system administrator.",
        },
        Reason::KeyUsageNotForSigning => Texts {
            title_ja: "この証明書は署名用ではありません",
            advice_ja: "確定の電子署名には、カードの署名用証明書を使用してください。",
            title_en: "This certificate is not a signing certificate",
            advice_en: "Sign confirmations with your card's signing certificate.",
        },
    }
}

/// A finished page: status, content type and body. Headers are the caller's job; a
/// response built from a `Page` should carry (as [`Page::into_response`] does):
///
/// - `Content-Type: {content_type}`
/// - `Cache-Control: no-store` — denial pages and whoami are per-person and per-moment
///   (a doctor's name, a revoked card); no shared or browser cache may keep or replay them.
/// - `X-Content-Type-Options: nosniff` — so a JSON body echoing certificate text is never
///   sniffed as HTML.
/// - `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; ...` — the
///   pages need nothing but their inline style; anything else that slipped in cannot run.
/// - `Referrer-Policy: no-referrer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

/// The policy the HTML pages carry in a `<meta>` tag: they need nothing but their inline
/// style, so anything else that slipped in cannot load or run.
const META_CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";
/// The header form adds `frame-ancestors`, which browsers ignore in a `<meta>` tag.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Page {
    /// The page as an `http::Response` with the headers listed on [`Page`]. The body stays
    /// a `String`; map it into the server's body type (`resp.map(Full::from)`).
    pub fn into_response(self) -> http::Response<String> {
        use http::header::{self, HeaderValue};
        let mut response = http::Response::new(self.body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        // `content_type` is a public field; a bad value must not panic the server.
        let content_type = HeaderValue::from_str(self.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

/// Whether the client asked for JSON, from its `Accept` header.
///
/// JSON when `application/json` (or `*/json`) is listed with q > 0 and HTML
/// (`text/html`, `application/xhtml+xml`) does not rank above it: a higher q wins, and on
/// equal q the one listed first wins, so a browser's `text/html,...` gets HTML. Wildcards
/// (`*/*`, curl's default) and a missing header mean "no preference" and get HTML, the
/// page a person can read. Parameters other than `q` are ignored; an unparseable q counts
/// as 1 (the client did list the type).
pub fn wants_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    // (q, position) of the first acceptable JSON and HTML entries.
    let mut json: Option<(f32, usize)> = None;
    let mut html: Option<(f32, usize)> = None;
    for (position, entry) in accept.split(',').enumerate() {
        let mut parts = entry.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| parse_q(v));
        if q <= 0.0 {
            continue;
        }
        let slot = match media.as_str() {
            "application/json" | "*/json" => &mut json,
            "text/html" | "application/xhtml+xml" => &mut html,
            _ => continue,
        };
        match slot {
            // Keep the best q; on a tie the earlier entry stays.
            Some((best, _)) if *best >= q => {}
            _ => *slot = Some((q, position)),
        }
    }
    match (json, html) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some((jq, jpos)), Some((hq, hpos))) => jq > hq || (jq == hq && jpos < hpos),
    }
}

fn parse_q(value: &str) -> f32 {
    match value.trim().trim_matches('"').parse::<f32>() {
        // `parse` accepts "NaN" and "inf"; neither is a weight.
        Ok(q) if q.is_finite() => q.clamp(0.0, 1.0),
        _ => 1.0,
    }
}

/// Minimal HTML escaping of `& < > " '`, enough for text content and quoted attribute
/// values. Used for every value the pages did not write themselves.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        _ => out.push(c),
    }
}

/// [`escape_html`] for text from certificates and other untrusted sources, which also
/// makes invisible characters visible as `\u{…}`: control characters, and the bidi and
/// zero-width controls that could make a hostile name display as someone else's (a
/// right-to-left override turns "txet" into "text"). The audit record keeps the raw value.
pub fn escape_untrusted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        let invisible = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c,
                '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
        if invisible {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        } else {
            push_escaped(&mut out, c);
        }
    }
    out
}

// Japanese system fonts first: the pages are read mostly on Windows and macOS in Japanese
// clinics, and the default sans-serif there may lack kana.
const STYLE: &str = "\
:root{color-scheme:light dark;}\
body{margin:0;padding:2rem 1rem;font-family:system-ui,-apple-system,\"Hiragino Sans\",\"Hiragino Kaku Gothic ProN\",\"Yu Gothic UI\",Meiryo,sans-serif;line-height:1.7;background:#f4f5f7;color:#1d2330;}\
main{max-width:42rem;margin:0 auto;padding:1.5rem 2rem;background:#fff;border-radius:8px;border-top:6px solid #b3261e;box-shadow:0 1px 4px rgba(0,0,0,.12);}\
main.ok{border-top-color:#2f6f3e;}\
h1{font-size:1.45rem;margin:.2rem 0 .6rem;}\
h2{font-size:1.1rem;margin:1.4rem 0 .4rem;}\
.status{margin:0;color:#5b6270;font-size:.9rem;}\
.en{color:#3a4150;}\
code,pre{font-family:ui-monospace,SFMono-Regular,Consolas,\"BIZ UDGothic\",monospace;}\
code{background:#eef0f3;padding:.05rem .3rem;border-radius:3px;word-break:break-all;}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:1.4rem 0 .6rem;}\
dt{font-weight:600;}dd{margin:0;}\
table{border-collapse:collapse;width:100%;margin:1rem 0;}\
th,td{text-align:left;vertical-align:top;padding:.45rem .5rem;border-bottom:1px solid #dde0e5;}\
th{white-space:nowrap;font-weight:600;}\
td{word-break:break-all;}\
.label-en{display:block;font-weight:normal;font-size:.8rem;color:#5b6270;}\
details{margin-top:1rem;}\
pre{white-space:pre-wrap;word-break:break-all;background:#eef0f3;padding:.6rem;border-radius:4px;}\
.support{font-size:.9rem;color:#5b6270;}\
@media (prefers-color-scheme:dark){body{background:#15181d;color:#e3e6eb;}main{background:#1f232a;}\
code,pre{background:#2a2f37;}.en,.status,.support,.label-en{color:#aab1bd;}th,td{border-color:#343a44;}}";

/// A whole HTML document around `main` (already escaped). `title` is escaped here.
fn html_document(title: &str, main_class: &str, main: &str) -> String {
    html_document_with_policy(title, main_class, main, META_CONTENT_SECURITY_POLICY)
}

/// The policy of pages that carry forms (held writes, emergency access): they post to
/// the gateway itself and nowhere else.
pub const FORMS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const META_FORMS_CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'";

/// [`html_document`] for a page with forms.
pub fn html_document_with_forms(title: &str, main: &str) -> String {
    html_document_with_policy(title, "ok", main, META_FORMS_CONTENT_SECURITY_POLICY)
}

fn html_document_with_policy(title: &str, main_class: &str, main: &str, policy: &str) -> String {
    let mut out = String::with_capacity(STYLE.len() + main.len() + 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n");
    // Also as a <meta> so the page is locked down even if a caller forgets the header.
    let _ = writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">"
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"robots\" content=\"noindex\">\n");
    let _ = writeln!(out, "<title>{}</title>", escape_html(title));
    let _ = writeln!(out, "<style>{STYLE}</style>");
    out.push_str("</head>\n<body>\n");
    let _ = writeln!(out, "<main class=\"{main_class}\">");
    out.push_str(main);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The denial page, as JSON or HTML.
///
/// `detail` is technical detail for the support desk (it may quote certificate names, so
/// it is escaped as untrusted text); for a certificate denial without one, the reason's
/// English description stands in. `request_id` is shown so the audit record can be found.
///
/// JSON: `{"error": code, "status": n, "message_en": title, "message_ja": title,
/// "advice_en": ..., "advice_ja": ..., "detail": string|null, "request_id": ...}`.
/// HTML: Japanese title and advice, then English, the code in `<code>`, the request id,
/// and the detail in a closed `<details>` block. See [`Page`] for the headers to send.
pub fn denial_page(denial: Denial, detail: Option<&str>, request_id: &str, json: bool) -> Page {
    let status = denial.status();
    let detail = detail.or(match denial {
        Denial::Certificate(reason) => Some(reason.description()),
        _ => None,
    });
    if json {
        let body = serde_json::json!({
            "error": denial.code(),
            "status": status.as_u16(),
            "message_en": denial.title_en(),
            "message_ja": denial.title_ja(),
            "advice_en": denial.advice_en(),
            "advice_ja": denial.advice_ja(),
            "detail": detail,
            "request_id": request_id,
        });
        return Page {
            status,
            content_type: CONTENT_TYPE_JSON,
            body: body.to_string(),
        };
    }

    let code = escape_html(denial.code());
    let request_id = escape_untrusted(request_id);
    let mut main = String::with_capacity(2048);
    let _ = writeln!(
        main,
        "<p class=\"status\">{} {} · <code>{code}</code></p>",
        status.as_u16(),
        escape_html(status.canonical_reason().unwrap_or("")),
    );
    let _ = writeln!(main, "<h1>{}</h1>", escape_html(denial.title_ja()));
    let _ = writeln!(main, "<p>{}</p>", escape_html(denial.advice_ja()));
    let _ = writeln!(
        main,
        "<section lang=\"en\" class=\"en\">\n<h2>{}</h2>\n<p>{}</p>\n</section>",
        escape_html(denial.title_en()),
        escape_html(denial.advice_en()),
    );
    let _ = writeln!(
        main,
        "<dl>\n<dt>理由コード <span lang=\"en\">Reason code</span></dt><dd><code>{code}</code></dd>\n\
         <dt>リクエストID <span lang=\"en\">Request ID</span></dt><dd><code>{request_id}</code></dd>\n</dl>"
    );
    main.push_str(
        "<p class=\"support\">お問い合わせの際は、理由コードとリクエストIDをお伝えください。<br>\
         <span lang=\"en\">When you contact support, please quote the reason code and the request ID.</span></p>\n",
    );
    if let Some(detail) = detail {
        let _ = writeln!(
            main,
            "<details>\n<summary>技術情報 <span lang=\"en\">Technical details</span></summary>\n<pre>{}</pre>\n</details>",
            escape_untrusted(detail)
        );
    }
    let title = format!("{} / {}", denial.title_ja(), denial.title_en());
    Page {
        status,
        content_type: CONTENT_TYPE_HTML,
        body: html_document(&title, "denied", &main),
    }
}

/// Labels of the identity fields whoami knows, in display order: (key, Japanese, English).
/// Fields not listed here follow in key order under their raw key.
const IDENTITY_LABELS: [(&str, &str, &str); 13] = [
    ("kind", "種別", "Kind"),
    ("role", "資格", "Role (hcRole)"),
    ("roles", "資格（すべて）", "All roles"),
    ("name", "氏名（ローマ字）", "Name"),
    ("name_kanji", "氏名（漢字）", "Name (kanji)"),
    ("org", "所属組織", "Organization"),
    ("org_kanji", "所属組織（漢字）", "Organization (kanji)"),
    ("hpki_id", "HPKI ID", "HPKI ID"),
    (
        "cert_serial",
        "証明書のシリアル番号",
        "Certificate serial number",
    ),
    ("cert_issuer", "証明書の発行者", "Certificate issuer"),
    (
        "cert_sha256",
        "証明書のフィンガープリント（SHA-256）",
        "Certificate fingerprint (SHA-256)",
    ),
    ("profile", "信頼プロファイル", "Trust profile"),
    ("tls_version", "TLSバージョン", "TLS version"),
];

/// One identity value as display text (not yet escaped): strings bare, lists joined, null
/// and empty as a dash, anything else as compact JSON.
fn identity_value_text(key: &str, value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) if s.is_empty() => "—".to_owned(),
        Value::String(s) => {
            // A Japanese gloss for the kinds the gateway defines (pki::CertKind).
            let gloss = match (key, s.as_str()) {
                ("kind", "person") => "（個人）",
                ("kind", "organization") => "（組織）",
                ("kind", "unknown") => "（不明）",
                _ => "",
            };
            format!("{s}{gloss}")
        }
        Value::Array(items) if items.is_empty() => "—".to_owned(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// `/_hpki/whoami`: what the gateway knows about this connection's certificate.
///
/// `identity` is a JSON object (kind, role, roles, name, name_kanji, org, org_kanji,
/// hpki_id, cert_serial, cert_issuer, cert_sha256, profile, tls_version, ...) or null for
/// an anonymous visitor. JSON returns it as is under `{"identity": ..., "request_id": ...}`;
/// HTML renders a table with Japanese and English labels, every key and value escaped as
/// untrusted (they come from the certificate). Always 200. See [`Page`] for the headers
/// (`Cache-Control: no-store` matters here: the page names a person).
pub fn whoami_page(identity: &serde_json::Value, request_id: &str, json: bool) -> Page {
    if json {
        let body = serde_json::json!({ "identity": identity, "request_id": request_id });
        return Page {
            status: StatusCode::OK,
            content_type: CONTENT_TYPE_JSON,
            body: body.to_string(),
        };
    }

    let mut main = String::with_capacity(2048);
    main.push_str("<p class=\"status\"><code>/_hpki/whoami</code></p>\n");
    let rows: Vec<(String, String)> = match identity {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Object(map) => {
            let known = IDENTITY_LABELS
                .iter()
                .filter_map(|(key, ja, en)| {
                    map.get(*key).map(|v| {
                        (
                            format!(
                                "{}<span class=\"label-en\" lang=\"en\">{}</span>",
                                escape_html(ja),
                                escape_html(en)
                            ),
                            escape_untrusted(&identity_value_text(key, v)),
                        )
                    })
                })
                .collect::<Vec<_>>();
            let extra = map
                .iter()
                .filter(|(key, _)| !IDENTITY_LABELS.iter().any(|(k, _, _)| k == key))
                .map(|(key, v)| {
                    (
                        format!("<code>{}</code>", escape_untrusted(key)),
                        escape_untrusted(&identity_value_text(key, v)),
                    )
                });
            known.into_iter().chain(extra).collect()
        }
        // Not the documented shape; show it rather than pretend the visitor is anonymous.
        other => vec![(
            "<code>identity</code>".to_owned(),
            escape_untrusted(&other.to_string()),
        )],
    };

    if identity.is_null() {
        main.push_str("<h1>HPKIカードが提示されていません</h1>\n");
        main.push_str("<p>この接続では、HPKIカードの証明書が提示されていません。ログインが必要な場合は、カードリーダーにHPKIカードを挿入し、ブラウザーを再読み込みしてください。</p>\n");
        main.push_str(
            "<section lang=\"en\" class=\"en\">\n<h2>No HPKI card presented</h2>\n\
             <p>Your browser did not present an HPKI card certificate on this connection. \
             To log in, insert your HPKI card into the reader and reload the page.</p>\n</section>\n",
        );
    } else {
        main.push_str("<h1>この接続の証明書情報</h1>\n");
        main.push_str("<p>この接続で提示されたHPKIカードの証明書から、ゲートウェイが読み取った情報です。</p>\n");
        main.push_str(
            "<section lang=\"en\" class=\"en\">\n<h2>Certificate on this connection</h2>\n\
             <p>What the gateway read from the HPKI card certificate presented on this connection.</p>\n</section>\n",
        );
        main.push_str("<table>\n<tbody>\n");
        for (label, value) in &rows {
            let _ = writeln!(
                main,
                "<tr><th scope=\"row\">{label}</th><td>{value}</td></tr>"
            );
        }
        main.push_str("</tbody>\n</table>\n");
    }
    let _ = writeln!(
        main,
        "<dl>\n<dt>リクエストID <span lang=\"en\">Request ID</span></dt><dd><code>{}</code></dd>\n</dl>",
        escape_untrusted(request_id)
    );
    Page {
        status: StatusCode::OK,
        content_type: CONTENT_TYPE_HTML,
        body: html_document("証明書情報 / Certificate identity", "ok", &main),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const HOSTILE: &str = "<script>alert(1)</script>";

    fn is_japanese(s: &str) -> bool {
        s.chars()
            .any(|c| matches!(c, '\u{3040}'..='\u{30FF}' | '\u{4E00}'..='\u{9FFF}'))
    }

    // No `_` arm: adding a Denial variant fails to compile here until GATEWAY (and so
    // GATEWAY_CODES) is reviewed.
    fn listed(d: Denial) -> bool {
        match d {
            Denial::Certificate(r) => Reason::ALL.contains(&r),
            Denial::ClientCertificateRequired
            | Denial::NoHcRole
            | Denial::RoleNotAllowed
            | Denial::KindNotAllowed
            | Denial::NoRoute
            | Denial::RequestTooLarge
            | Denial::UpstreamUnavailable
            | Denial::UpstreamTimeout
            | Denial::BadRequest
            | Denial::AssistantNotInLedger
            | Denial::StoreUnavailable
            | Denial::NotSupervisor
            | Denial::PendingNotFound
            | Denial::PendingAlreadyDecided
            | Denial::CsrfFailed
            | Denial::AuditUnavailable
            | Denial::SessionTokenInvalid
            | Denial::SignatureRequired
            | Denial::SignatureInvalid
            | Denial::SigningCertUntrusted
            | Denial::SigningCertRevoked
            | Denial::SigningCertStatusUnknown
            | Denial::SignerNotDoctor => Denial::GATEWAY.contains(&d),
        }
    }

    #[test]
    fn every_denial_has_all_four_texts_in_the_right_language() {
        let all: Vec<Denial> = Denial::all().collect();
        assert_eq!(all.len(), Reason::ALL.len() + Denial::GATEWAY.len());
        for d in all {
            assert!(listed(d), "{d} missing from Denial::GATEWAY");
            let code = d.code();
            for (what, text) in [
                ("title_ja", d.title_ja()),
                ("advice_ja", d.advice_ja()),
                ("title_en", d.title_en()),
                ("advice_en", d.advice_en()),
            ] {
                assert!(!text.trim().is_empty(), "{code}: empty {what}");
            }
            assert!(is_japanese(d.title_ja()), "{code}: title_ja not Japanese");
            assert!(is_japanese(d.advice_ja()), "{code}: advice_ja not Japanese");
            assert!(
                d.title_en().is_ascii(),
                "{code}: title_en not plain English"
            );
            assert!(
                !d.title_ja().ends_with('。'),
                "{code}: title_ja is a sentence"
            );
            assert!(
                d.advice_ja().ends_with('。'),
                "{code}: advice_ja unfinished"
            );
            assert!(d.advice_en().ends_with('.'), "{code}: advice_en unfinished");
            // Polite form: advice asks (ください) or explains (です/ます).
            assert!(
                ["ください。", "ます。", "です。"]
                    .iter()
                    .any(|end| d.advice_ja().ends_with(end)),
                "{code}: advice_ja not in です/ます form"
            );
        }
    }

    #[test]
    fn codes_are_distinct_snake_case_and_round_trip() {
        let mut seen = HashSet::new();
        for d in Denial::all() {
            let code = d.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code} is not snake_case"
            );
            assert_eq!(Denial::from_code(code), Some(d));
            assert_eq!(d.to_string(), code);
        }
        for code in Denial::GATEWAY_CODES {
            assert!(
                Reason::from_code(code).is_none(),
                "{code} collides with a pki::Reason"
            );
        }
        assert_eq!(
            Denial::GATEWAY_CODES,
            [
                "client_certificate_required",
                "no_hcrole",
                "role_not_allowed",
                "kind_not_allowed",
                "no_route",
                "request_too_large",
                "upstream_unavailable",
                "upstream_timeout",
                "bad_request",
                "assistant_not_in_ledger",
                "store_unavailable",
                "not_supervisor",
                "pending_not_found",
                "pending_already_decided",
                "csrf_failed",
                "audit_unavailable",
                "session_token_invalid",
                "signature_required",
                "signature_invalid",
                "signing_cert_untrusted",
                "signing_cert_revoked",
                "signing_cert_status_unknown",
                "signer_not_doctor",
            ]
        );
        assert_eq!(Denial::from_code("nope"), None);
        assert_eq!(
            Denial::from(Reason::CertExpired),
            Denial::Certificate(Reason::CertExpired)
        );
    }

    #[test]
    fn statuses_are_as_documented() {
        for r in Reason::ALL {
            assert_eq!(Denial::Certificate(r).status(), StatusCode::FORBIDDEN);
        }
        let expected = [
            (Denial::ClientCertificateRequired, 403),
            (Denial::NoHcRole, 403),
            (Denial::RoleNotAllowed, 403),
            (Denial::KindNotAllowed, 403),
            (Denial::NoRoute, 404),
            (Denial::RequestTooLarge, 413),
            (Denial::UpstreamUnavailable, 502),
            (Denial::UpstreamTimeout, 504),
            (Denial::BadRequest, 400),
            (Denial::AssistantNotInLedger, 403),
            (Denial::StoreUnavailable, 503),
            (Denial::NotSupervisor, 403),
            (Denial::PendingNotFound, 404),
            (Denial::PendingAlreadyDecided, 409),
            (Denial::CsrfFailed, 403),
            (Denial::AuditUnavailable, 503),
            (Denial::SessionTokenInvalid, 403),
            (Denial::SignatureRequired, 400),
            (Denial::SignatureInvalid, 403),
            (Denial::SigningCertUntrusted, 403),
            (Denial::SigningCertRevoked, 403),
            (Denial::SigningCertStatusUnknown, 503),
            (Denial::SignerNotDoctor, 403),
        ];
        assert_eq!(expected.len(), Denial::GATEWAY.len());
        for (d, status) in expected {
            assert_eq!(d.status().as_u16(), status, "{d}");
        }
    }

    #[test]
    fn the_texts_given_in_the_brief_are_kept_verbatim() {
        let d = Denial::Certificate(Reason::SigningCertNotForLogin);
        assert_eq!(d.title_ja(), "署名用の証明書ではログインできません");
        assert!(d
            .advice_ja()
            .starts_with("カードの認証用証明書を使用してください。"));
        assert_eq!(
            d.title_en(),
            "A signing certificate cannot be used to log in"
        );
        let d = Denial::Certificate(Reason::CertExpired);
        assert_eq!(d.title_ja(), "カードの証明書の有効期限が切れています");
        assert_eq!(d.title_en(), "Your card's certificate has expired");
        assert_eq!(
            Denial::Certificate(Reason::UntrustedIssuer).title_ja(),
            "この証明書の発行元はこのネットワークで信頼されていません"
        );
        assert_eq!(
            Denial::Certificate(Reason::PolicyNotAccepted).title_ja(),
            "この種類の証明書ではログインできません"
        );
        assert_eq!(
            Denial::ClientCertificateRequired.title_ja(),
            "HPKIカードを挿入してください"
        );
        assert_eq!(
            Denial::RoleNotAllowed.title_ja(),
            "このページはあなたの資格では利用できません"
        );
    }

    #[test]
    fn json_denials_parse_and_carry_the_code() {
        for d in Denial::all() {
            let page = denial_page(d, Some("detail text"), "req-123", true);
            assert_eq!(page.status, d.status());
            assert_eq!(page.content_type, "application/json");
            let v: serde_json::Value = serde_json::from_str(&page.body).expect("valid JSON");
            assert_eq!(v["error"], d.code());
            assert_eq!(v["status"], d.status().as_u16());
            assert_eq!(v["message_en"], d.title_en());
            assert_eq!(v["message_ja"], d.title_ja());
            assert_eq!(v["advice_en"], d.advice_en());
            assert_eq!(v["advice_ja"], d.advice_ja());
            assert_eq!(v["detail"], "detail text");
            assert_eq!(v["request_id"], "req-123");
        }
    }

    #[test]
    fn missing_detail_falls_back_to_the_reason_description_or_null() {
        let r = Reason::BadSignature;
        let v: serde_json::Value =
            serde_json::from_str(&denial_page(r.into(), None, "r", true).body).unwrap();
        assert_eq!(v["detail"], r.description());
        let v: serde_json::Value =
            serde_json::from_str(&denial_page(Denial::NoRoute, None, "r", true).body).unwrap();
        assert!(v["detail"].is_null());
        let html = denial_page(Denial::NoRoute, None, "r", false).body;
        assert!(!html.contains("<details>"));
        let html = denial_page(r.into(), None, "r", false).body;
        assert!(html.contains(&escape_html(r.description())));
    }

    #[test]
    fn html_denials_show_code_both_languages_and_request_id() {
        for d in Denial::all() {
            let page = denial_page(d, Some("some detail"), "req-7f3a", false);
            assert_eq!(page.status, d.status());
            assert_eq!(page.content_type, "text/html; charset=utf-8");
            let body = &page.body;
            assert!(body.starts_with("<!DOCTYPE html>"));
            assert!(body.contains("<html lang=\"ja\">"));
            assert!(body.contains("<meta charset=\"utf-8\">"));
            assert!(body.contains(&format!("<code>{}</code>", d.code())));
            for text in [d.title_ja(), d.advice_ja(), d.title_en(), d.advice_en()] {
                assert!(body.contains(&escape_html(text)), "{d}: missing {text}");
            }
            let title = format!(
                "<title>{}</title>",
                escape_html(&format!("{} / {}", d.title_ja(), d.title_en()))
            );
            assert!(body.contains(&title), "{d}: bilingual <title>");
            assert!(body.contains("req-7f3a"));
            assert!(body.contains("<details>") && body.contains("some detail"));
            // Self-contained: no scripts, no external resources.
            let lower = body.to_ascii_lowercase();
            for banned in [
                "<script", "<link", "<img", "<iframe", "src=", "href=", "http://", "https://",
                "url(",
            ] {
                assert!(!lower.contains(banned), "{d}: page contains {banned}");
            }
        }
    }

    #[test]
    fn hostile_detail_and_request_id_are_escaped() {
        let page = denial_page(
            Denial::Certificate(Reason::UntrustedIssuer),
            Some(&format!("issuer CN={HOSTILE} O=\"x\" & 'y'")),
            "<b>id</b>",
            false,
        );
        assert!(!page.body.contains("<script>"));
        assert!(!page.body.contains("<b>"));
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.body.contains("&quot;x&quot; &amp; &#39;y&#39;"));
        // In JSON the text survives intact (it is data, escaped by the JSON encoder).
        let page = denial_page(Denial::BadRequest, Some(HOSTILE), "r", true);
        let v: serde_json::Value = serde_json::from_str(&page.body).unwrap();
        assert_eq!(v["detail"], HOSTILE);
    }

    #[test]
    fn invisible_and_bidi_characters_are_shown_not_obeyed() {
        let name = "Dr. \u{202E}evil\u{202C} \u{0007}bell\u{200B}";
        let page = denial_page(Denial::NoHcRole, Some(name), "r", false);
        assert!(!page.body.contains('\u{202E}'));
        assert!(!page.body.contains('\u{0007}'));
        assert!(!page.body.contains('\u{200B}'));
        assert!(page.body.contains("\\u{202e}evil\\u{202c}"));
        assert!(page.body.contains("\\u{0007}bell\\u{200b}"));
        // Line breaks in multi-line details stay.
        assert_eq!(escape_untrusted("a\nb\tc"), "a\nb\tc");
    }

    #[test]
    fn escape_html_covers_the_five_characters() {
        assert_eq!(
            escape_html(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape_html("山田 太郎"), "山田 太郎");
        assert_eq!(escape_html(""), "");
    }

    fn sample_identity() -> serde_json::Value {
        serde_json::json!({
            "kind": "person",
            "role": "Medical Doctor",
            "roles": ["Medical Doctor", "Pharmacist"],
            "name": "YAMADA TARO",
            "name_kanji": "山田 太郎",
            "org": null,
            "org_kanji": null,
            "hpki_id": "1234567890",
            "cert_serial": "0a1b2c",
            "cert_issuer": "CN=HPKI-01-AuthCA, O=MHLW, C=JP",
            "cert_sha256": "ab".repeat(32),
            "profile": "hpki-auth",
            "tls_version": "TLSv1.3",
            "assistant": false,
        })
    }

    #[test]
    fn whoami_json_returns_the_identity_as_is() {
        let identity = sample_identity();
        let page = whoami_page(&identity, "req-9", true);
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&page.body).unwrap();
        assert_eq!(v["identity"], identity);
        assert_eq!(v["request_id"], "req-9");
        let v: serde_json::Value =
            serde_json::from_str(&whoami_page(&serde_json::Value::Null, "r", true).body).unwrap();
        assert!(v["identity"].is_null());
    }

    #[test]
    fn whoami_html_labels_every_field_in_both_languages() {
        let page = whoami_page(&sample_identity(), "req-9", false);
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        let body = &page.body;
        for (_, ja, en) in IDENTITY_LABELS {
            assert!(body.contains(&escape_html(ja)), "missing label {ja}");
            assert!(body.contains(&escape_html(en)), "missing label {en}");
        }
        assert!(body.contains("person（個人）"));
        assert!(body.contains("Medical Doctor, Pharmacist"));
        assert!(body.contains("山田 太郎"));
        assert!(body.contains("<code>assistant</code>") && body.contains(">false<"));
        assert!(body.contains("req-9"));
        // Known fields first, in label order.
        let pos = |s: &str| body.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(pos("種別") < pos("氏名（漢字）"));
        assert!(pos("TLSバージョン") < pos("<code>assistant</code>"));
    }

    #[test]
    fn whoami_html_escapes_hostile_identity_keys_and_values() {
        let identity = serde_json::json!({
            "name": HOSTILE,
            "name_kanji": "\"><img src=x onerror=alert(1)>",
            "roles": [HOSTILE, {"x": HOSTILE}],
            HOSTILE: HOSTILE,
        });
        let body = whoami_page(&identity, HOSTILE, false).body;
        assert!(!body.contains("<script>"));
        assert!(!body.contains("<img"));
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn whoami_html_for_an_anonymous_visitor() {
        let body = whoami_page(&serde_json::Value::Null, "req-0", false).body;
        assert!(body.contains("HPKIカードが提示されていません"));
        assert!(body.contains("No HPKI card presented"));
        assert!(!body.contains("<table>"));
        assert!(body.contains("req-0"));
    }

    #[test]
    fn wants_json_cases() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                        image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let cases: [(Option<&str>, bool); 22] = [
            (None, false),
            (Some(""), false),
            (Some("*/*"), false),
            (Some(chromium), false),
            (Some(firefox), false),
            (Some("application/json"), true),
            (Some("Application/JSON"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("*/json"), true),
            (Some("application/json;q=0"), false),
            (Some("application/json; q=0.000"), false),
            (Some("application/json;q=0, */*"), false),
            (Some("application/json;q=0.001"), true),
            (Some("text/html, application/json"), false),
            (Some("application/json, text/html"), true),
            (Some("text/html;q=0.5, application/json"), true),
            (Some("application/json;q=0.5, text/html"), false),
            (Some("text/html;q=0, application/json"), true),
            (Some("*/*, application/json"), true),
            (Some("application/json;q=NaN"), true),
            (Some("application/jsonp"), false),
            (Some("application/problem+json"), false),
        ];
        for (accept, expected) in cases {
            assert_eq!(wants_json(accept), expected, "Accept: {accept:?}");
        }
    }

    #[test]
    fn into_response_sets_the_headers() {
        let resp = denial_page(Denial::NoRoute, None, "r", false).into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with(META_CONTENT_SECURITY_POLICY));
        let bad = Page {
            status: StatusCode::OK,
            content_type: "text/plain\n",
            body: String::new(),
        };
        assert_eq!(
            bad.into_response().headers()["content-type"],
            "application/octet-stream"
        );
    }
}
