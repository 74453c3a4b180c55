"""Two-way referral (双向转诊): referrals up, down and across the consortium, their lifecycle with
deadlines and escalation, the criteria catalogue, destination suggestion, grants for the receiver,
arrival from ingestion, and follow-up tasks after a down referral."""
