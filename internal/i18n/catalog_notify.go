package i18n

// Expiry reminders (internal/notify) and the dashboard's list of them.
// Kept in a file of their own so the main catalog's merges stay small;
// init adds them to the one catalog, and TestCatalogComplete covers them.
var notifyMessages = map[Lang]map[string]string{
	English: {
		"action.notification.send": "Reminder sent",
		// %[1]s user, %[2]s subject (CN), %[3]s serial, %[4]s expiry, %[5]s time left, %[6]s renew link
		"notify.subject.reminder": "Your client certificate expires in %s",
		"notify.body.reminder": "Hello %[1]s,\n\nyour client certificate %[2]s (serial %[3]s) expires on %[4]s, in %[5]s.\n" +
			"Renew it before then, or the sites that ask for it will stop letting you in:\n\n%[6]s\n\n" +
			"Log in, choose a file password and import the new file as you did the first time.\n\n— certportal",
		"notify.subject.expired": "Your client certificate has expired",
		"notify.body.expired": "Hello %[1]s,\n\nyour client certificate %[2]s (serial %[3]s) expired on %[4]s.\n" +
			"Sites that ask for it no longer let you in. Get a new one here:\n\n%[6]s\n\n— certportal",
		// %[1]s user, %[2]s time left
		"notify.helpdesk.subject.reminder": "Certificate of %[1]s expires in %[2]s",
		"notify.helpdesk.subject.expired":  "Escalation: certificate of %[1]s expired unrenewed",
		"notify.helpdesk.body": "User: %[1]s\nCertificate: %[2]s\nSerial: %[3]s\nExpires: %[4]s\nTime left: %[5]s\n" +
			"Renew page (for the user): %[6]s\n\nThe user was reminded; this copy is for the helpdesk.\n",
		"notify.helpdesk.body_expired": "User: %[1]s\nCertificate: %[2]s\nSerial: %[3]s\nExpired: %[4]s\n" +
			"Renew page (for the user): %[6]s\n\nThe certificate expired and no newer one was issued. The user was reminded before it expired.\n",
		"notify.expired_short": "expired",
		"notify.renew":         "Renew",
		"notify.minutes":       "%d minutes",

		"dash.reminders":           "Reminders sent",
		"dash.reminder_item":       "%[1]s — %[2]s, %[3]s",
		"notify.channel.email":     "email",
		"notify.channel.webhook":   "chat",
		"notify.channel.helpdesk":  "helpdesk copy",
		"notify.threshold":         "%s before expiry",
		"notify.threshold_expired": "after expiry",

		// A held offboarding sweep, to the helpdesk address. %[1]s when,
		// %[2]s why, %[3]s users in Vault, %[4]s users with active
		// certificates, %[5]s users it would offboard, %[6]s their names
		// (a sample), %[7]s share limit, %[8]s count limit, %[9]d event id.
		"notify.offboard_held.subject": "Offboarding held: nothing revoked until an operator confirms",
		"notify.offboard_held.body": "The offboarding sweep at %[1]s revoked nothing and holds until an operator looks.\n\n" +
			"Why: %[2]s\nUsers in Vault: %[3]s\nUsers with active certificates: %[4]s\nUsers it would offboard: %[5]s\n" +
			"Those users: %[6]s\nLimits: %[7]s of the users, %[8]s users at once\n\n" +
			"Check the list: certportal offboard --once --dry-run\n" +
			"If it is right: certportal offboard --once --confirm --by <your name>\n" +
			"If Vault's user list is wrong, fix Vault; the next sweep then resumes by itself.\n\n" +
			"Audit event #%[9]d. You are told once per hold, not every sweep.\n",
		"action.offboard.resumed": "Offboarding resumed",
	},
	Korean: {
		"action.notification.send": "알림 발송",
		"notify.subject.reminder":  "클라이언트 인증서가 %s 후 만료됩니다",
		"notify.body.reminder": "%[1]s 님, 안녕하세요.\n\n클라이언트 인증서 %[2]s(일련번호 %[3]s)가 %[4]s에 만료됩니다(%[5]s 남음).\n" +
			"그 전에 갱신하지 않으면 인증서를 요구하는 사이트에 접속할 수 없습니다:\n\n%[6]s\n\n" +
			"로그인한 뒤 파일 비밀번호를 정하고, 처음과 같이 새 파일을 가져오세요.\n\n— certportal",
		"notify.subject.expired": "클라이언트 인증서가 만료되었습니다",
		"notify.body.expired": "%[1]s 님, 안녕하세요.\n\n클라이언트 인증서 %[2]s(일련번호 %[3]s)가 %[4]s에 만료되었습니다.\n" +
			"인증서를 요구하는 사이트에 더 이상 접속할 수 없습니다. 여기에서 새 인증서를 받으세요:\n\n%[6]s\n\n— certportal",
		"notify.helpdesk.subject.reminder": "%[1]s 사용자의 인증서가 %[2]s 후 만료됩니다",
		"notify.helpdesk.subject.expired":  "에스컬레이션: %[1]s 사용자의 인증서가 갱신되지 않은 채 만료되었습니다",
		"notify.helpdesk.body": "사용자: %[1]s\n인증서: %[2]s\n일련번호: %[3]s\n만료: %[4]s\n남은 시간: %[5]s\n" +
			"갱신 페이지(사용자용): %[6]s\n\n사용자에게 알림을 보냈습니다. 이 사본은 헬프데스크용입니다.\n",
		"notify.helpdesk.body_expired": "사용자: %[1]s\n인증서: %[2]s\n일련번호: %[3]s\n만료: %[4]s\n" +
			"갱신 페이지(사용자용): %[6]s\n\n인증서가 만료되었고 새 인증서가 발급되지 않았습니다. 만료 전에 사용자에게 알림을 보냈습니다.\n",
		"notify.expired_short": "만료됨",
		"notify.renew":         "갱신",
		"notify.minutes":       "%d분",

		"dash.reminders":           "보낸 알림",
		"dash.reminder_item":       "%[1]s — %[2]s, %[3]s",
		"notify.channel.email":     "이메일",
		"notify.channel.webhook":   "채팅",
		"notify.channel.helpdesk":  "헬프데스크 사본",
		"notify.threshold":         "만료 %s 전",
		"notify.threshold_expired": "만료 후",

		"notify.offboard_held.subject": "오프보딩 보류: 운영자가 확인할 때까지 아무것도 폐기하지 않습니다",
		"notify.offboard_held.body": "%[1]s의 오프보딩 점검은 아무것도 폐기하지 않았으며, 운영자가 확인할 때까지 보류합니다.\n\n" +
			"사유: %[2]s\nVault 사용자 수: %[3]s\n유효한 인증서를 가진 사용자 수: %[4]s\n오프보딩 대상 사용자 수: %[5]s\n" +
			"대상 사용자: %[6]s\n한도: 사용자의 %[7]s, 한 번에 %[8]s명\n\n" +
			"목록 확인: certportal offboard --once --dry-run\n" +
			"목록이 맞으면: certportal offboard --once --confirm --by <이름>\n" +
			"Vault의 사용자 목록이 잘못되었다면 Vault를 고치세요. 다음 점검이 스스로 재개합니다.\n\n" +
			"감사 이벤트 #%[9]d. 보류마다 한 번만 알립니다(점검마다가 아님).\n",
		"action.offboard.resumed": "오프보딩 재개",
	},
}

func init() {
	for lang, msgs := range notifyMessages {
		for k, v := range msgs {
			catalog[lang][k] = v
		}
	}
}
